"""Helpers shared by the tests: bundled data paths, an in-process CLI runner, hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from geovae.cli import app

DATA = Path(__file__).resolve().parents[1] / "data"
PBMC = DATA / "pbmc68k_counts.h5ad"
DIGITS = DATA / "digits.csv.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_cli(*args: str):
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
