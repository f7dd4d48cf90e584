"""Writing outputs safely: every file goes to a temporary sibling first and is renamed into
place; a run's outputs are staged together and committed in one step (`OutputSet`), so an
interrupted run leaves either all new outputs or the old ones, and no temporary files.

New files get the permissions the user's umask gives any new file (not mkstemp's 0600).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import signal
import stat
import tempfile
import threading
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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A critical section: SIGINT and SIGTERM that arrive inside it only set a flag, and the
    first of them is raised again once it is over (its usual handler then runs: the CLI's
    removes the temporaries and exits 130).

    Python runs signal handlers in the main thread, whichever thread the kernel gave the
    signal to (blocking it with ``pthread_sigmask`` covers the main thread only, and torch's
    and numba's threads exist at write time), so the handlers themselves are swapped for one
    that only records the signal. Outside the main thread (where handlers cannot be set)
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def defer(signum: int, _frame: object) -> None:
        pending.append(signum)

    held = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(final: Path, directory: bool = False) -> Path:
    """A hidden temporary sibling of ``final`` that names this process (for stale cleanup)."""
    prefix = f".{final.name}{TMP_TAG}{os.getpid()}-"
    with signals_deferred():  # a signal between creating and registering it would leak it
        if directory:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
            os.close(fd)
            path = Path(name)
        LIVE.add(path)
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
    """Remove temporaries of ``final`` left by a geovae process that no longer runs; an
    earlier output such a process had moved aside (killed mid-commit) goes back to ``final``
    when nothing is there."""
    if not final.parent.is_dir():
        return
    prefix = f".{final.name}{TMP_TAG}"  # glob characters in the name are matched literally
    for q in final.parent.glob(glob.escape(prefix) + "*"):
        if not q.name.startswith(prefix):
            continue
        pid, sep, _ = q.name[len(prefix):].partition("-")
        if sep and pid.isdigit() and pid.isascii() and int(pid) > 0 \
                and not _pid_alive(int(pid)):
            old = q / "old"  # a commit killed between its two renames: the earlier output
            if q.is_dir() and not q.is_symlink() and os.path.lexists(old) \
                    and not os.path.lexists(final):
                os.replace(old, final)  # goes back, never deleted
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() and not q.is_symlink() \
                else q.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
    LIVE.discard(path)


def check_replaceable(final: Path, directory: bool = False,
                      replace_if: Callable[[Path], bool] | None = None) -> None:
    """What a run may replace, checked again at the moment of the rename: nothing, a file
    (for a file output), or a folder ``replace_if`` accepts (for a folder output: a geovae
    model directory). A folder that appeared while the run worked is never replaced."""
    try:
        mode = os.lstat(final).st_mode
    except FileNotFoundError:
        return
    if directory:
        if stat.S_ISDIR(mode) and replace_if is not None and replace_if(final):
            return
        raise OptionError(f"'{final}' exists and is not a geovae model directory (checked "
                          "again before replacing it): geovae only replaces folders it wrote; "
                          "nothing was replaced: choose another model directory or remove it "
                          "yourself")
    if stat.S_ISDIR(mode):
        raise OptionError(f"'{final}' is a folder (it appeared while this run worked): geovae "
                          "never replaces a folder with a file; nothing was replaced: choose "
                          "another output path or remove the folder yourself")


#: errno values a write can fail with that name the file system, not geovae
_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "the file system is read-only", errno.EFBIG: "file too large",
           errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
           errno.EIO: "input/output error"}


def write_failure(exc: BaseException, path: Path) -> OptionError | None:
    """The one-line error for a write of ``path`` that the file system refused (a full disk,
    a read-only file system, a quota; also as h5py reports them), else None."""
    import re

    if not isinstance(exc, OSError):  # torch: "unexpected pos", h5py: RuntimeError
        if isinstance(exc, (RuntimeError, ValueError)) and path.parent.is_dir() \
                and free_bytes(path.parent) < (1 << 20):
            return write_failure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
        return None
    code = exc.errno
    if code is None:  # h5py: "... errno = 28, error message = 'No space left on device'"
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code not in _CAUSES:
        return None
    where = exc.filename if isinstance(exc.filename, str) and exc.filename else path
    return OptionError(f"could not write '{where}': {_CAUSES[code]} ({os.strerror(code)}); "
                       "nothing was replaced and earlier outputs are untouched: free space "
                       "or choose another output folder")


def free_bytes(folder: Path) -> int:
    """Bytes this process may still write into ``folder``'s file system."""
    st = os.statvfs(folder)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def read_only_folders(folders: list[Path]) -> set[Path]:
    """The folders among ``folders`` on a file system mounted read-only (asked of all at
    once, so a plan of several outputs asks once; one that cannot be asked is not)."""
    found = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                found.add(folder)
    return found


def h5ad_bytes(adata: ad.AnnData) -> int:
    """About how many bytes ``adata`` takes as an uncompressed .h5ad (its arrays and tables;
    a backed AnnData's matrices count as its file's size)."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    def size(x: object) -> int:
        if sparse.issparse(x):
            return int(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes)
        if isinstance(x, pd.DataFrame):
            return int(x.memory_usage(deep=True).sum())
        return int(getattr(x, "nbytes", 0) or np.asarray(x).nbytes) if x is not None else 0

    from geovae.data.h5 import backed_path, is_backed

    total = size(adata.obs) + size(adata.var)
    if is_backed(adata):  # the output is a copy of the input file plus geovae's keys
        file = backed_path(adata)
        total += os.path.getsize(file) if file.is_file() else 0
    elif adata.X is not None:
        total += size(adata.X)
    for store in (adata.layers, adata.obsm, adata.varm, adata.obsp, adata.varp):
        total += sum(size(v) for v in store.values())
    if adata.raw is not None:
        total += size(adata.raw.X)
    return total


def check_space(needs: list[tuple[Path, int]]) -> None:
    """Refuse (one error naming the folder, what is needed and what is free) when the outputs
    ``needs`` ((output path, bytes) pairs) would not fit where they go, before anything is
    written: a write that fills a disk can crash h5py rather than fail cleanly."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, nbytes in needs:
        folder = path.parent
        dev = os.stat(folder).st_dev
        first, total = by_device.get(dev, (folder, 0))
        by_device[dev] = (first, total + nbytes)
    for folder, nbytes in by_device.values():
        need = int(nbytes * 1.1) + (1 << 20)  # HDF5's own structures, the plot, config.json
        free = free_bytes(folder)
        if free < need:
            raise OptionError(f"not enough free space in '{folder}' for the outputs: about "
                              f"{need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free "
                              "(no space left on the device); nothing was written and earlier "
                              "outputs are untouched: free space or choose another output "
                              "folder")


@contextlib.contextmanager
def failures_named(final: Path) -> Iterator[None]:
    """An OSError while writing ``final`` (full disk, read-only folder, ...) becomes the
    one-line error `write_failure` makes of it, naming the output; others pass unchanged."""
    try:
        yield
    except OSError as exc:
        failure = write_failure(exc, final)
        if failure is None:
            raise
        raise failure from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; rename it onto ``path`` only on success."""
    final = Path(path)
    if not final.parent.is_dir():
        raise OptionError(f"output folder '{final.parent}' does not exist: create it first")
    tmp = _tmp_name(final)
    try:
        with failures_named(final):
            yield tmp
        with signals_deferred():
            check_replaceable(final)
            _publish_mode(tmp)
            os.replace(tmp, final)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace_if: Callable[[Path], bool] | None = None
               ) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` only on success.

    An existing ``path`` is replaced only where ``replace_if(path)`` is true (checked before
    and again at the swap); otherwise nothing is touched and the error names the folder.
    """
    final = Path(path)
    check_dir_target(final, replace_if)
    tmp = _tmp_name(final, directory=True)
    try:
        with failures_named(final):
            yield tmp
        with OutputSet() as outputs:
            outputs.staged.append((tmp, final, True, replace_if))
            outputs.commit()
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


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)


class OutputSet:
    """The outputs of one run, staged as temporaries and committed together.

    ``stage(path)`` returns a temporary path to write ``path``'s content to (a folder for
    ``directory=True``, replacing an existing folder only where ``replace_if`` accepts it);
    ``commit()`` renames every staged output into place in one critical section (signals
    only set a flag, see `signals_deferred`), re-checking each target at its rename and
    restoring the old outputs if anything fails. Leaving the ``with`` block without a commit
    removes every temporary; a write the file system refuses (full disk, read-only) becomes
    one error naming the output and the cause.
    """

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path, bool, Callable[[Path], bool] | None]] = []

    def __enter__(self) -> OutputSet:
        return self

    def stage(self, final: str | os.PathLike, directory: bool = False,
              replace_if: Callable[[Path], bool] | None = None) -> Path:
        final = Path(final)
        clean_stale(final)
        self.staged.append((final, final, directory, replace_if))  # named if mkstemp fails
        tmp = _tmp_name(final, directory=directory)
        self.staged[-1] = (tmp, final, directory, replace_if)
        return tmp

    def commit(self) -> None:
        """Every staged output into place, or (on any failure) none and the old ones back."""
        with signals_deferred():
            for _, final, directory, replace_if in self.staged:
                check_replaceable(final, directory, replace_if)
            moved: list[tuple[Path, Path | None]] = []  # (final, backup), new output in place
            try:
                for tmp, final, directory, replace_if in self.staged:
                    check_replaceable(final, directory, replace_if)  # at the rename itself
                    _publish_mode(tmp)
                    backup = None
                    if os.path.lexists(final):
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
                        LIVE.discard(backup.parent)  # kept should the rename back fail
                        os.replace(backup, final)
                        _remove(backup.parent)
                raise
            for _, backup in moved:
                if backup is not None:
                    _remove(backup.parent)
            COMMITTED.extend(final for final, _ in moved)
        self.staged = []

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        where = self.staged[-1][1] if self.staged else None
        failure = write_failure(exc, where) if exc is not None and where else None
        for tmp, final, _, _ in self.staged:
            if tmp != final:
                _remove(tmp)
        self.staged = []
        if failure is not None:
            raise failure from None
