"""Shared pieces of the CLI commands: option types, the error guard, threads, reporting."""

from __future__ import annotations

import functools
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

err = Console(stderr=True)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages.")]
Plot = Annotated[Path | None, typer.Option(
    help="UMAP PNG path (default: beside OUT, OUT_STEM.umap.png).")]
Resolution = Annotated[float, typer.Option(help="Leiden resolution (higher: more clusters).")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu or cuda.")]
ObsColumns = Annotated[list[str] | None, typer.Option(
    help="CSV/TSV input: a column that is metadata (obs), not a feature, even if numeric "
         "(e.g. age); repeat for several. --batch-key/--label-key columns always are.")]
Threads = Annotated[int, typer.Option(
    help="CPU threads for torch (0: torch's default, all cores). Set it to the cores you "
         "were given (e.g. Snakemake's {threads}); oversubscribed cores slow training a lot.")]


def _set_threads(threads: int) -> None:
    from geovae.errors import OptionError

    if threads < 0:
        raise OptionError("--threads must be 0 (default) or a positive number")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _command_line(ctx: typer.Context) -> str:
    """The command as run, rebuilt from the parsed options (non-default ones only)."""
    words = ["geovae", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value != param.default and value not in (None, [], ()):
            flag = param.opts[0]
            if param.is_flag:
                words.append(flag)
            else:
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one readable line on stderr (no source line)."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        return  # library deprecations are for developers, not for users of the CLI
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one stderr line and exit codes 2 (input/usage) or 1 (internal)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from geovae.errors import GeoVAEError

        debug = kwargs.get("debug", False)
        shown = warnings.showwarning
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except GeoVAEError as exc:
            if debug:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc.cli_message()}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: no output was written (earlier outputs are untouched)")
            raise typer.Exit(130) from None
        except FloatingPointError as exc:
            if debug:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug:
                err.print_exception()
            first = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {first} "
                      "(no output was left half-written; rerun with --debug for the traceback and "
                      "report it)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        finally:
            warnings.showwarning = shown

    return wrapper


def _report(result: Any, quiet: bool) -> None:
    if quiet:
        return
    for msg in result.messages:
        err.print(f"[cyan]note:[/] {msg}", highlight=False, soft_wrap=True)
    err.print(f"wrote {result.out}", highlight=False, soft_wrap=True)
    if result.plot:
        err.print(f"wrote {result.plot}", highlight=False, soft_wrap=True)
    if result.model_dir:
        err.print(f"wrote model to {result.model_dir}/", highlight=False, soft_wrap=True)


