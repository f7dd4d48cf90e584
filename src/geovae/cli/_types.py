"""Option types of the CLI: closed sets of values as real choices (help lists them, shell
completion offers them), flags without a value type, and one-line errors for a value that is
not one of the choices (exit code 2, like every other usage error geovae names)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from geovae.cli._help import in_panels, install


class Choice(str, Enum):
    """A closed set of option values; ``str(member)`` is its value."""

    def __str__(self) -> str:
        return str(self.value)


def choices(name: str, *values: str, **named: str) -> Any:
    """A `Choice` called ``name``: a member per value (named as the value, ``-`` as ``_``),
    then the ``named`` members (``fp32="32"``)."""
    members = [(v.replace("-", "_"), v) for v in values] + list(named.items())
    return Choice(name, members, module=__name__)  # type: ignore[call-overload]


Model = choices("Model", "vae", "cgmvae")
Latent = choices("Latent", "euclidean", "sphere", "hyperbolic")
Posterior = choices("Posterior", "vmf", "power-spherical")
PrecisionChoice = choices("PrecisionChoice", "auto", fp32="32", bf16="bf16")
Likelihood = choices("Likelihood", "auto", "nb", "zinb", "gaussian", "bernoulli")
Freeze = choices("Freeze", "all", "covariates", "none")
Method = choices("Method", "leiden", "mixture")
EncoderInput = choices("EncoderInput", "log1p", "log1p_cp10k")
Novelty = choices("Novelty", "query", "reference", "query-overall")
MergeRule = choices("MergeRule", "elbo", "modes", "demp", "lobes", "graph")
MixtureStart = choices("MixtureStart", "leiden", "gmm")


class MixtureWeights(Choice):
    global_ = "global"
    per_cell = "per-cell"

    @property
    def python(self) -> str:
        """The Python API's spelling (``per_cell``)."""
        return self.value.replace("-", "_")


#: parameter name -> its choices (for the one-line error)
CHOICES: dict[str, type[Choice]] = {"model": Model, "latent": Latent, "posterior": Posterior,
                                    "likelihood": Likelihood, "freeze": Freeze,
                                    "method": Method, "precision": PrecisionChoice,
                                    "encoder_input": EncoderInput, "novelty": Novelty,
                                    "merge_rule": MergeRule, "mixture_start": MixtureStart}


def value(option: Any) -> Any:
    """The plain value of a choice option (its string), anything else unchanged."""
    return option.value if isinstance(option, Enum) else option


def _given(args: list[str], opts: list[str]) -> str:
    """The value given on the command line for an option (its last occurrence)."""
    found = ""
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1:]
    return found


def _flags_without_type(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # `--volume`, not `--volume <bool>`
    return params


class Group(TyperGroup):
    """The ``geovae`` group: flags (``--version``, ``--help``) show no value type, and a usage
    error (unknown command or option, a value of the wrong type, a missing argument) is one
    line on stderr with exit code 2, not a usage box."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        install()
        super().format_help(ctx, formatter)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

        from geovae.cli._log import error

        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError:  # plain `geovae`: the help, as typer shows it
            return super().main(*args, **kwargs)
        except UsageError as exc:
            ctx = exc.ctx
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            error(" ".join(exc.format_message().split()) + hint)
            sys.exit(exc.exit_code)
        except ClickException as exc:
            error(" ".join(exc.format_message().split()))
            sys.exit(exc.exit_code)
        except typer.Abort:
            error("aborted", tag="interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


class Command(TyperCommand):
    """A geovae command: flags show no value type in --help, options are grouped into panels
    that fit 80 columns (`geovae.cli._help`), and a value outside an option's choices is one
    line on stderr (exit code 2) instead of a usage box."""

    _for_help = False

    def get_params(self, ctx: Any) -> list[Any]:
        params = _flags_without_type(super().get_params(ctx))
        return in_panels(params) if self._for_help else params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        install()
        self._for_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._for_help = False

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            param = getattr(exc, "param", None)
            choices = CHOICES.get(getattr(param, "name", None) or "")
            if choices is None:
                raise
            from geovae.cli._log import error

            flag = param.opts[0]
            error(f"unknown {flag} '{_given(given, list(param.opts))}': choose "
                  + ", ".join(c.value for c in choices))
            raise typer.Exit(2) from None
