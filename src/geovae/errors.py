"""Errors that geovae reports to users as one clear line.

An `OptionError` knows the Python parameter it is about (``param``): its message names the
parameter for library users (``latent_dim``) and `cli_message` names the command-line flag
(``--latent-dim``). Messages write ``{opt}`` where the option's name goes.
"""

from __future__ import annotations


class GeoVAEError(Exception):
    """Base class for errors caused by the user's input or options (CLI exit code 2)."""

    def cli_message(self) -> str:
        """The message as the command line shows it."""
        return str(self)


class InputError(GeoVAEError):
    """The input data is missing, unreadable or not valid for the requested model."""


class OptionError(GeoVAEError):
    """An option is invalid or inconsistent with the data; ``param`` is its Python name."""

    def __init__(self, message: str, param: str | None = None):
        self.message, self.param = message, param
        super().__init__(message.replace("{opt}", f"`{param}`") if param else message)

    def cli_message(self) -> str:
        if not self.param:
            return self.message
        return self.message.replace("{opt}", flag_of(self.param))


#: Python parameters whose command-line flag is not ``--`` + the name with ``-`` for ``_``
FLAGS = {"batch_key": "--batch-key", "latent_options": "--flow/--posterior",
         "model_options": "--n-clusters/--dirichlet-alpha",
         # Python only (no flag): name the dictionary entry
         "latent_options.decoder_input": "latent_options['decoder_input']",
         "model_options.delete_moves": "--delete-moves/--no-delete-moves"}


def flag_of(param: str) -> str:
    """The command-line flag of a Python parameter: ``latent_dim`` -> ``--latent-dim``;
    ``latent_options.flow`` -> ``--flow``."""
    if param in FLAGS:
        return FLAGS[param]
    return "--" + param.rsplit(".", 1)[-1].replace("_", "-")
