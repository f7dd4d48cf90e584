"""Errors that geovae reports to users as one clear line.

Messages name Python parameters, never command-line flags: ``{opt}`` stands for the error's
own parameter (``param``), ``{name}`` for another parameter and ``{name=value}`` for a
parameter set to a value (``value`` written as Python: ``'raw'``, ``False``, ``0.5``).
``str(error)`` renders them for library users (```layer```, ``layer='raw'``); the command
line renders the same message with its own flag names (``--layer``, ``--layer raw``) through
`GeoVAEError.render`, so the map from parameters to flags lives in the CLI alone. A `Note`
(a logged line, a run's note) references parameters the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: ``{opt}``, ``{name}`` or ``{name=value}`` in a message; or a single-quoted stretch (a path,
#: a column, a gene as the user wrote it), matched so that it stays as written: a file
#: ``data/{sample}.h5ad`` (an unexpanded Snakemake wildcard) is not a parameter reference
REFERENCE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=([^{}]*))?\}|(?<!\w)'[^'\n]*'(?!\w)")


def python_name(param: str, value: str | None = None) -> str:
    """How a library user sees a parameter reference: ```layer``` or ``layer='raw'``."""
    return f"`{param}`" if value is None else f"{param}={value}"


def render(message: str, name: Callable[[str, str | None], str],
           param: str | None = None) -> str:
    """``message`` with every parameter reference written by ``name(param, value)``
    (``{opt}`` stands for ``param``; left as written without one)."""

    def one(match: re.Match[str]) -> str:
        ref, value = match.group(1), match.group(2)
        if ref is None:  # quoted user text
            return match.group(0)
        if ref == "opt":
            if not param:
                return match.group(0)
            ref = param
        return name(ref, value)

    return REFERENCE.sub(one, message)


class Note(str):
    """A logged line or run note that references Python parameters as errors do: the string
    is the library user's rendering (```layer```, ``layer='raw'``); `render` writes the same
    line with the command line's flags."""

    message: str

    def __new__(cls, message: str) -> Note:
        note = super().__new__(cls, render(message, python_name))
        note.message = message
        return note

    def render(self, name: Callable[[str, str | None], str]) -> str:
        """The line with every parameter reference written by ``name(param, value)``."""
        return render(self.message, name)


class Referencing:
    """An error whose message may reference Python parameters (see the module docstring);
    ``param`` is the parameter the error is about, if any (``{opt}`` in the message)."""

    def __init__(self, message: str, param: str | None = None):
        self.message, self.param = message, param
        super().__init__(self.render(python_name))

    def render(self, name: Callable[[str, str | None], str]) -> str:
        """The message with every parameter reference written by ``name(param, value)``."""
        return render(self.message, name, self.param)


class GeoVAEError(Referencing, Exception):
    """Base class for errors caused by the user's input or options (CLI exit code 2)."""


class DivergedError(Referencing, FloatingPointError):
    """Training produced a non-finite loss (CLI exit code 1)."""


class InputError(GeoVAEError):
    """The input data is missing, unreadable or not valid for the requested model."""


class OptionError(GeoVAEError):
    """An option is invalid or inconsistent with the data; ``param`` is its Python name."""
