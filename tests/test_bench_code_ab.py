"""benchmarks/bench_code_ab.py records what its "new" side ran: HEAD's hash, ``+dirty`` where
``src/`` has changes not committed (its child imports the working tree's ``src/``). It once
recorded a dirty checkout as HEAD."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import load_benchmark


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def test_a_dirty_src_is_recorded_as_such(tmp_path: Path) -> None:
    bench = load_benchmark("bench_code_ab")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    head = bench.git(tmp_path, "rev-parse", "--short", "HEAD")
    assert bench.code_label(tmp_path) == head
    (tmp_path / "notes.md").write_text("outside src/: not what the child runs\n")
    assert bench.code_label(tmp_path) == head
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert bench.code_label(tmp_path) == f"{head}+dirty"
    _git(tmp_path, "checkout", "--", "src/a.py")
    assert bench.code_label(tmp_path) == head
    (tmp_path / "src" / "b.py").write_text("y = 1\n")  # untracked: imported all the same
    assert bench.code_label(tmp_path) == f"{head}+dirty"
