"""Errors that geovae reports to users as one clear line."""

from __future__ import annotations


class GeoVAEError(Exception):
    """Base class for errors caused by the user's input or options (CLI exit code 2)."""


class InputError(GeoVAEError):
    """The input data is missing, unreadable or not valid for the requested model."""


class OptionError(GeoVAEError):
    """A command-line or API option is invalid or inconsistent with the data."""
