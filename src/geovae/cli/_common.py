"""Shared pieces of the CLI commands: option types, the error guard, threads, reporting."""

from __future__ import annotations

import functools
import inspect
import logging
import re
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from geovae.cli._flags import message, names_of
from geovae.cli._log import err, error, setup
from geovae.cli._types import EncoderInput, MergeRule, MixtureStart, MixtureWeights, PrecisionChoice

log = logging.getLogger("geovae.cli")

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only (no notes, "
                                                           "no progress bar).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Also debug messages (each "
                                                               "phase's time).")]
Plot = Annotated[Path | None, typer.Option(
    help="UMAP PNG path (default: beside OUT, OUT_STEM.umap.png).")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
NCells = Annotated[int, typer.Option(help="Number of cells.")]
Resolution = Annotated[str | None, typer.Option(
    help="Leiden resolution (higher: more clusters), or auto: chosen from the data (the most "
         "stable of a grid 0.1-2.0 when a fifth of the cells is left out; logged). Default: "
         "auto for a CSV/TSV table, 1 otherwise.", metavar="<float|auto>", show_default=False)]
LeidenMerge = Annotated[str | None, typer.Option(
    "--leiden-merge",
    help="After Leiden at a given resolution, merge the two clusters the kNN graph cannot tell "
         "apart, one pair at a time, while their PAGA connectivity (0-1) exceeds this; gap: "
         "above 0.8, then on down to 0.3 where that ends at a tenfold drop (pieces of large "
         "groups are less connected); off: Leiden's clusters as they are. Recorded in "
         "uns['geovae']['cluster']['merge']. Default: gap.", metavar="<float|gap|off>",
    show_default=False)]
NNeighbors = Annotated[int, typer.Option(
    help="Neighbours per cell in the kNN graph the clusters and the UMAP are built from.")]
NoUmap = Annotated[bool, typer.Option(
    "--no-umap", help="No UMAP and no plot (for very large data); clusters are still made.")]
UmapEpochs = Annotated[int | None, typer.Option(
    min=0, show_default=False,
    help="UMAP optimisation epochs. Default: 100 up to 10,000 cells; above, 70 at a learning "
         "rate of 1.43 and 1 negative sample, not 5 (30 % less time than 100 at 1). N: N "
         "epochs at learning rate 1 (100: the earlier default). 0: umap-learn's defaults, 500 "
         "epochs up to 10,000 cells, 200 above, 5 negative samples: a closer picture at 5-13 "
         "times the time.")]
MetricsJson = Annotated[Path | None, typer.Option(
    help="Also write the run's metrics to this .json (losses, held-out log-likelihood, "
         "cluster sizes, ARI/NMI against labels, timings, device, versions; keys in "
         "docs/metrics.md).")]
LabelKey = Annotated[str | None, typer.Option(
    help="obs column of known labels: coloured in the plot, and the clusters are scored "
         "against it (ARI, NMI).", metavar="<column>")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu, cuda or "
                                          "cuda:N.", metavar="<auto|cpu|cuda>")]
ObsColumns = Annotated[list[str] | None, typer.Option(
    help="CSV/TSV input: a column that is metadata (obs), not a feature, even if numeric "
         "(e.g. age); repeat for several. --batch-key/--label-key columns always are.",
    metavar="<column>")]
Backed = Annotated[bool | None, typer.Option(
    "--backed/--no-backed", show_default=False,
    help="Read the .h5ad from disk in chunks instead of loading X (out of core: memory does "
         "not grow with the number of cells; outputs are a copy of the input file plus "
         "geovae's keys). Default: automatic for an .h5ad whose matrix in memory (about 28 "
         "bytes per stored value) would take more than half of the available memory.")]
Devices = Annotated[int, typer.Option(
    help="Train on N processes of this node with DistributedDataParallel: N GPUs (one each) "
         "with a CUDA device, else N CPU processes sharing the cores; restarts this command "
         "through torchrun. --batch-size stays the global minibatch. Several nodes: run "
         "torchrun yourself (docs/large-data.md).", metavar="N")]
EncoderInputOpt = Annotated[EncoderInput | None, typer.Option(
    case_sensitive=False,
    help="Count data: what the encoder sees. log1p: log(1 + count) of the raw counts (the "
         "latent then also carries each cell's sequencing depth); log1p_cp10k: log(1 + count "
         "scaled to 10,000 per cell), so cells of one type with deeper or shallower libraries "
         "sit together (the decoder gets the library size either way). Default: log1p.",
    show_default=False)]
NClusters = Annotated[int | None, typer.Option(
    help="cgmvae: number of mixture components, an upper bound (default: number of labels, "
         "else 20).")]
DirichletAlpha = Annotated[float | None, typer.Option(
    help="cgmvae: concentration α of the symmetric Dirichlet prior on the mixture weights "
         "(default 1/K with global weights, 1 per cell); smaller empties more components.")]
MixtureWeightsOpt = Annotated[MixtureWeights | None, typer.Option(
    case_sensitive=False,
    help="cgmvae: global: one set of mixture weights for the data (a Bayesian GMM's "
         "q(π) = Dir(γ)), so components the data do not need empty out and --n-clusters is an "
         "upper bound; per-cell: the thesis's weights d drawn per cell (every component "
         "keeps prior mass 1/K). Default: global.", show_default=False)]
ConditionPrior = Annotated[bool | None, typer.Option(
    "--condition-prior/--no-condition-prior",
    help="cgmvae with --batch-key: also feed the covariates to the mixture prior p(z|w,y,c) "
         "(geovae 0.1.0). Off by default: then the decoder explains the condition and "
         "X_geovae is corrected for it; on, the latent splits by condition.",
    show_default=False)]
DeleteMoves = Annotated[bool | None, typer.Option(
    "--delete-moves/--no-delete-moves",
    help="cgmvae with global mixture weights: after training, remove spare components "
         "(the confident choice, q(y|z) > 0.9, of at most 0.1% of the cells) when the bound "
         "(ELBO) is higher without them, so their weight drops to the prior's share. On by "
         "default.", show_default=False)]
MergeRuleOpt = Annotated[MergeRule | None, typer.Option(
    case_sensitive=False,
    help="cgmvae without labels (Euclidean latent, global weights): which components merge "
         "after training. elbo: only where the bound (ELBO) rises; modes: where the pair's "
         "density has one mode on its ridgeline; demp: where q(y|z) confuses the pair "
         "(misclassification > 0.1), which folds a type's lobe of shallow cells into it; "
         "lobes: demp, but not where the pair's cells differ in depth-normalised expression "
         "(marker genes); graph: where the kNN graph of the latent cannot tell them apart "
         "(PAGA connectivity, the gap rule of the Leiden clusters' merge), except a group "
         "under 2% of the cells with few neighbours in the other, and, on counts, two "
         "groups that differ >= 2-fold in 20% of their genes. Default: graph on counts "
         "(nb, zinb), elbo otherwise; modes and demp also merged weak real types on "
         "simulated counts (benchmarks/RESULTS.md).", show_default=False)]
WarmStart = Annotated[float | None, typer.Option(
    min=0.0, max=0.75,
    help="cgmvae without labels (Euclidean latent, global weights): share of the epochs that "
         "train z as a VAE before the mixture starts from the latent's clusters "
         "(--mixture-start) and is held for a quarter of the epochs (default 0.5; 0 trains "
         "the mixture end to end, as geovae <= 0.2.0).", metavar="<share>",
    show_default=False)]
MixtureStartOpt = Annotated[MixtureStart | None, typer.Option(
    case_sensitive=False,
    help="cgmvae with --warm-start: how the mixture starts from the pretrained latent. "
         "leiden (default): one component per Leiden cluster of the latent's kNN graph "
         "(resolution 0.5, 0.75 or 1, the one whose clusters fit the latent best by the "
         "integrated classification likelihood; the smallest fold into their nearest while "
         "there are more than --n-clusters), the rest empty; gmm: a Bayesian Gaussian "
         "mixture with --n-clusters components (the default before 2026-12-07).",
    show_default=False)]
Precision = Annotated[PrecisionChoice, typer.Option(
    case_sensitive=False,
    help="Hidden layers' matrix products while training: auto (bfloat16 autocast on a CUDA GPU "
         "that supports it, else float32), 32 or bf16. Heads, likelihood, loss, validation "
         "and the written latent stay float32.")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the training step: faster steps after seconds to tens of "
                      "seconds of compiling; for long runs.")]
Threads = Annotated[int, typer.Option(
    help="CPU threads for torch. 0: OMP_NUM_THREADS when set, else the CPUs this process may "
         "use (its CPU affinity, within a cgroup CPU quota), at most 4 (geovae's networks "
         "are small). Set it to the cores you were given (e.g. Snakemake's {threads}); "
         "oversubscribed cores slow training a lot.")]


def argument(metavar: str, help: str) -> Any:
    """A command's positional argument, named ``metavar`` in --help (no default shown)."""
    return typer.Argument(help=help, metavar=metavar, show_default=False)


def _check_device(device: str) -> str:
    """``--device`` is auto, cpu, cuda or cuda:N (checked before any work)."""
    from geovae.errors import OptionError

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device.lower()):
        raise OptionError(f"unknown --device '{device}': use auto, cpu, cuda or cuda:N")
    return device.lower()


def _torchrun() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) that torchrun set for this process ((0, 1) without torchrun); read
    from the environment, so commands that never train do not import torch for them."""
    import os

    return int(os.environ.get("RANK") or 0), int(os.environ.get("WORLD_SIZE") or 1)


def _relaunch(ctx: typer.Context, devices: int, device: str,
              check: Callable[[], object]) -> None:
    """``--devices N`` (N > 1): ``check()`` the run, then this command on N processes through
    torchrun, ending with their exit code; N = 1 returns at once."""
    from geovae.errors import OptionError

    if devices < 1:
        raise OptionError("--devices must be at least 1")
    if devices == 1:
        return
    if _torchrun()[1] > 1:
        raise OptionError("--devices starts its own processes: under torchrun leave it out "
                          "(torchrun's --nproc-per-node sets the number)")
    import torch

    from geovae.training import distributed, resolve_device

    if resolve_device(device).type == "cuda" and devices > torch.cuda.device_count():
        raise OptionError(f"--devices {devices} but {torch.cuda.device_count()} GPU(s) are "
                          "visible: use at most that many, or --device cpu")
    check()
    args = shlex.split(_command_line(ctx))[1:]
    at = args.index("--devices")
    del args[at:at + 2]
    raise typer.Exit(distributed.launch(devices, args))


def _set_threads(threads: int) -> None:
    """torch's (and numba's, if not loaded yet) thread count: ``threads``, or for 0 the
    default of `geovae._threads.default_threads` (checked by `geovae._threads.resolve`)."""
    import os
    import sys

    from geovae._threads import resolve

    threads = resolve(threads)
    if "numba" not in sys.modules:  # UMAP's and pynndescent's parallel loops
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
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
                secondary = getattr(param, "secondary_opts", None)
                words.append(flag if value or not secondary else secondary[0])
            else:
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def run_context(ctx: typer.Context) -> dict[str, Any]:
    """What a file job (`geovae.runs`) takes from its command: the command line as run
    (``command``, for the run record) and how its notes name parameters (``names``: the
    command's flags)."""
    return {"command": _command_line(ctx), "names": names_of(ctx.command)}


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one readable line on stderr (no source line), through the log."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        return  # library deprecations are for developers, not for users of the CLI
    logging.getLogger("geovae").warning(str(message))


def _options(*declared: tuple[str, Any, Any]) -> list[inspect.Parameter]:
    """Keyword-only parameters (name, `Annotated` option, default) for a command signature."""
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                              default=default) for name, kind, default in declared]


#: the options of every command that are about its messages, added by `guarded`
MESSAGES = _options(("quiet", Quiet, False), ("verbose", Verbose, False),
                    ("debug", Debug, False))
#: the options of a command that clusters cells and writes a plot and a metrics file, for its
#: ``**outputs`` (its run takes them by these names)
OUTPUTS = _options(("merge", LeidenMerge, None), ("plot", Plot, None),
                   ("metrics_json", MetricsJson, None))


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command with the `MESSAGES` options (``--quiet``, ``--verbose``, ``--debug``) after
    its own: they set up the log, and errors become one stderr line and exit codes 2
    (input/usage) or 1 (internal). ``fn`` itself does not take them (its context's
    ``params`` hold them). A command that ends in ``**outputs`` takes the `OUTPUTS` options
    there (``merge``, ``plot``, ``metrics_json``: the names its run takes them by)."""
    own = inspect.signature(fn, eval_str=True)
    params = list(own.parameters.values())
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        params[-1:] = OUTPUTS

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from geovae.errors import GeoVAEError, OptionError

        quiet, verbose, debug = (kwargs.pop(p.name, False) for p in MESSAGES)
        rank, world = _torchrun()
        ctx = kwargs.get("ctx") or next((a for a in args if isinstance(a, typer.Context)), None)
        command = ctx.command if ctx is not None else None
        setup(quiet=quiet, verbose=verbose, command=command)
        if rank:  # under torchrun only rank 0 talks; the others show errors of their own
            logging.getLogger("geovae").setLevel(logging.ERROR)
        shown = warnings.showwarning
        if not debug:
            warnings.showwarning = _show_warning
        try:
            if quiet and verbose:
                raise OptionError("--quiet and --verbose contradict each other: give one")
            _check_common(kwargs)
            if world > 1 and fn.__name__ != "fit":
                raise OptionError(f"only `geovae fit` runs on several processes (torchrun); "
                                  f"run `geovae {fn.__name__}` once, without torchrun")
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except GeoVAEError as exc:
            if debug:
                err.print_exception()
            if not rank:  # every rank read the same input and options: rank 0 says it
                error(message(exc, command))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error("no output was written (earlier outputs are untouched)", tag="interrupted")
            raise typer.Exit(130) from None
        except FloatingPointError as exc:
            if debug:
                err.print_exception()
            error(message(exc))
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug:
                err.print_exception()
            first = str(exc).splitlines()[0] if str(exc) else ""
            who = f"rank {rank}: " if rank else ""
            error(f"{who}{type(exc).__name__}: {first} (no output was left half-written; rerun "
                  "with --debug for the traceback and report it)", tag="internal error")
            raise typer.Exit(1) from None
        finally:
            warnings.showwarning = shown

    wrapper.__signature__ = own.replace(  # type: ignore[attr-defined]
        parameters=[*params, *MESSAGES])
    return wrapper


def _check_common(options: dict[str, Any]) -> None:
    """Options several commands share, checked before any work: ``--seed`` (numpy's and
    torch's range) and ``--lr`` (positive, finite)."""
    import math

    from geovae.errors import OptionError
    from geovae.models.config import MAX_SEED

    seed = options.get("seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise OptionError(f"--seed must be a whole number between 0 and {MAX_SEED}, got {seed}")
    lr = options.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise OptionError(f"--lr must be a positive finite number, got {lr}")


def _report(result: Any) -> None:
    """Where the outputs went (the run logged its notes as they came)."""
    log.info("wrote %s", result.out)
    if result.plot:
        log.info("wrote %s", result.plot)
    if result.model_dir:
        log.info("wrote model to %s/", result.model_dir)
    if getattr(result, "metrics", None):
        log.info("wrote metrics to %s", result.metrics)
