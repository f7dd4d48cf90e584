"""Notes and errors reach stderr as written: text in square brackets (Python lists, option
names, rich-markup look-alikes) is not eaten as rich markup."""

from __future__ import annotations

import logging

import pytest

from geovae.cli._log import error, setup


@pytest.mark.parametrize("message", [
    "new categories {'stim': ['STIM', 'IFN']} trained",
    "missing model setting(s) ['n_hidden']",
    "a [bold]note[/bold] with [red] and [/] in it",
])
def test_log_lines_keep_square_brackets(capsys: pytest.CaptureFixture[str], message: str
                                        ) -> None:
    setup()
    logging.getLogger("geovae.runs").info(message)
    logging.getLogger("geovae.runs").warning(message)
    error(message)
    err = capsys.readouterr().err
    assert err.count(message) == 3, err
