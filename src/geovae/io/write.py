"""Writing outputs safely: every file goes to a temporary sibling first and is renamed into
place; a run's outputs are staged together and committed in one step (`OutputSet`), so an
interrupted run leaves either all new outputs or the old ones, and no temporary files.

New files get the permissions the user's umask gives any new file (not mkstemp's 0600).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import anndata as ad

from geovae.errors import OptionError

TMP_TAG = ".geovae-tmp-"
#: temporaries (and locks) this process has made and not yet renamed or removed: an
#: interrupted command-line run removes them before it exits (see `remove_live`)
LIVE: set[Path] = set()
#: outputs this process has committed (renamed into place)
COMMITTED: list[Path] = []


def remove_live() -> None:
    """Remove every live temporary of this process (called on SIGINT/SIGTERM by the CLI)."""
    for path in list(LIVE):
        with contextlib.suppress(OSError):
            _remove(path)
        LIVE.discard(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(final: Path, directory: bool = False) -> Path:
    """A hidden temporary sibling of ``final`` that names this process (for stale cleanup)."""
    prefix = f".{final.name}{TMP_TAG}{os.getpid()}-"
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:  # a signal between creating and registering the file would leak it
        if directory:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
            os.close(fd)
            path = Path(name)
        LIVE.add(path)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return path


def _publish_mode(path: Path) -> None:
    """Give ``path`` the mode a new file or folder gets under the umask."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~_umask())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> None:
    """Remove temporaries of ``final`` left by a geovae process that no longer runs."""
    if not final.parent.is_dir():
        return
    for q in final.parent.glob(f".{final.name}{TMP_TAG}*"):
        pid = q.name[len(final.name) + 1 + len(TMP_TAG):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
    LIVE.discard(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; rename it onto ``path`` only on success."""
    final = Path(path)
    if not final.parent.is_dir():
        raise OptionError(f"output folder '{final.parent}' does not exist: create it first")
    tmp = _tmp_name(final)
    try:
        yield tmp
        _publish_mode(tmp)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace_if: Callable[[Path], bool] | None = None
               ) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` only on success.

    An existing ``path`` is replaced only where ``replace_if(path)`` is true; otherwise
    nothing is touched and the error names the folder.
    """
    final = Path(path)
    check_dir_target(final, replace_if)
    tmp = _tmp_name(final, directory=True)
    try:
        yield tmp
        _publish_mode(tmp)
        _swap_in(tmp, final)
    finally:
        _remove(tmp)


def check_dir_target(final: Path, replace_if: Callable[[Path], bool] | None) -> None:
    """The checks `atomic_dir` makes before writing anything."""
    if not final.parent.is_dir():
        raise OptionError(f"output folder '{final.parent}' does not exist: create it first")
    if final.exists() and not final.is_dir():
        raise OptionError(f"'{final}' exists and is not a directory: choose another model "
                          "directory")
    if final.exists() and (replace_if is None or not replace_if(final)):
        raise OptionError(f"'{final}' exists and is not a geovae model directory: geovae only "
                          "replaces folders it wrote; choose another model directory or remove "
                          "it yourself")


def _swap_in(tmp: Path, final: Path) -> None:
    """Move ``tmp`` onto ``final`` (file or folder); an old folder is moved aside first."""
    if final.is_dir():
        old = _tmp_name(final, directory=True)
        os.replace(final, old / "old")
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old / "old", final)
            raise
        finally:
            _remove(old)
    else:
        os.replace(tmp, final)


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)


class OutputSet:
    """The outputs of one run, staged as temporaries and committed together.

    ``stage(path)`` returns a temporary path to write ``path``'s content to (a folder for
    ``directory=True``); ``commit()`` renames every staged output into place with signals
    blocked, restoring the old outputs if a rename fails; leaving the ``with`` block without a
    commit removes every temporary.
    """

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []

    def __enter__(self) -> OutputSet:
        return self

    def stage(self, final: str | os.PathLike, directory: bool = False) -> Path:
        final = Path(final)
        clean_stale(final)
        tmp = _tmp_name(final, directory=directory)
        self.staged.append((tmp, final))
        return tmp

    def commit(self) -> None:
        signals = {signal.SIGINT, signal.SIGTERM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        moved: list[tuple[Path, Path | None]] = []  # (final, backup), new output in place
        try:
            for tmp, final in self.staged:
                _publish_mode(tmp)
                backup = None
                if final.exists():
                    backup = _tmp_name(final, directory=True) / "old"
                    os.replace(final, backup)
                try:
                    os.replace(tmp, final)
                except BaseException:
                    if backup is not None:
                        os.replace(backup, final)
                        _remove(backup.parent)
                    raise
                LIVE.discard(tmp)
                moved.append((final, backup))
        except BaseException:
            for final, backup in reversed(moved):  # put the old outputs back
                _remove(final)
                if backup is not None:
                    os.replace(backup, final)
            raise
        finally:
            for _, backup in moved:
                if backup is not None:
                    _remove(backup.parent)
            COMMITTED.extend(final for final, _ in moved)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self.staged = []

    def __exit__(self, *exc: object) -> None:
        for tmp, _ in self.staged:
            _remove(tmp)
        self.staged = []
