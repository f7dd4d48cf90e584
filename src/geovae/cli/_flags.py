"""Where the command line meets the Python API: flags in, flags in error messages out.

Nothing here is a second list of options. A command's flags are its declaration (each click
parameter knows its ``--flag`` and ``--no-flag``); the Python side declares its options in
constructor signatures (a module's keyword options are ``model_options``, a latent's are
``latent_options``, `geovae.models.config`). So `fit_options` builds `geovae.fit`'s nested
dictionaries by asking which side declares a flag's name, and `message` renders the Python
parameters lower layers name in their errors (``{layer}``, ``{opt}``, `geovae.errors`) as
the running command's flags. Adding an option touches its flag, its consumer and its test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from typing import Any

#: fit's flags for the run around the model (files, graph): `geovae.runs.run_fit` takes them
RUN_FLAGS = ("input", "out", "model_dir", "plot", "resolution", "merge", "obs_columns",
             "backed", "n_neighbors", "no_umap", "umap_epochs", "metrics_json")
#: flags of the command line alone
CLI_FLAGS = ("devices", "quiet", "verbose", "debug")
#: flags whose Python parameter has another name
PYTHON_NAMES = {"compile": "torch_compile"}


def python_value(val: Any) -> Any:
    """A flag's value as Python takes it (a choice's Python spelling: ``per-cell`` ->
    ``per_cell`` where the Python side spells it so)."""
    return getattr(val, "python", val.value) if isinstance(val, Enum) else val


@functools.cache
def _nested() -> dict[str, str]:
    import geovae.models  # noqa: F401  (registers every model)
    from geovae.models.config import nested_options

    return nested_options()


def nested_in(name: str) -> str | None:
    """``latent_options`` or ``model_options`` when a latent geometry or a model declares an
    option called ``name`` (`geovae.models.config.nested_options`, asked once), else None."""
    return _nested().get(name)


def fit_options(ctx: Any) -> dict[str, Any]:
    """`geovae.fit` keyword arguments from the flags of a ``fit`` command: a flag a latent or
    model declares goes into its dictionary when it differs from the flag's default (so a
    default flag never reaches a model that does not take it); the others pass as they are."""
    defaults = {p.name: python_value(p.default) for p in ctx.command.params}
    out: dict[str, Any] = {"latent_options": {}, "model_options": {},
                           "progress": not ctx.params.get("quiet", False)}
    for name, val in ctx.params.items():
        if name in RUN_FLAGS or name in CLI_FLAGS:
            continue
        if isinstance(val, tuple):  # a repeatable flag: as the command function gets it
            val = list(val) or None
        val = python_value(val)
        group = nested_in(name)
        if group is None:
            out[PYTHON_NAMES.get(name, name)] = val
        elif val is not None and val != defaults.get(name):
            out[group][name] = val
    return out


def flag_of(param: str, value: str | None = None, command: Any = None) -> str:
    """The flag of a Python parameter as ``command`` declares it: ``--layer``,
    ``--backed/--no-backed``; with a value, ``--layer raw``, ``--no-backed`` for
    ``backed=False``. An entry of a nested dictionary (``model_options.delete_moves``) is the
    flag of its own name; one without a flag stays Python (``latent_options['x']``)."""
    declared = {p.name: p for p in getattr(command, "params", [])
                if getattr(p, "param_type_name", "") == "option"}
    by_flag = {PYTHON_NAMES.get(k, k): k for k in declared}
    if param in ("latent_options", "model_options") and declared:
        flags = [flag_of(n, command=None) for n in declared if nested_in(n) == param]
        return "/".join(flags) or param
    group, _, entry = param.rpartition(".")
    name = by_flag.get(entry, entry)
    if group and command is not None and name not in declared:
        return f"{group}['{entry}']" if value is None else f"{group}['{entry}']={value}"
    opts, off = ["--" + name.replace("_", "-")], []
    if name in declared:
        opts = [o for o in declared[name].opts if o.startswith("--")] or list(opts)
        off = [o for o in declared[name].secondary_opts if o.startswith("--")]
    if value is None:
        return f"{opts[0]}/{off[0]}" if off else opts[0]
    if value in ("True", "False"):
        return opts[0] if value == "True" else (off or ["--no-" + opts[0][2:]])[0]
    return f"{opts[0]} {value.strip(chr(39) + chr(34))}"


def names_of(command: Any) -> Callable[[str, str | None], str]:
    """How ``command`` names a parameter reference of a note (`geovae.runs.plan.RunResult`):
    its flag."""
    return lambda param, value: flag_of(param, value, command)


def message(exc: BaseException | str, command: Any = None) -> str:
    """An error's or a note's one line as the command line shows it (flags for Python
    parameters, `geovae.errors`)."""
    from geovae.errors import Note, Referencing

    if isinstance(exc, (Referencing, Note)):
        return exc.render(names_of(command))
    return str(exc)
