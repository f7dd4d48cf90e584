"""Output planning for file-level runs: every output location is checked before any data is
read, and a lock beside the output (``out``) keeps two runs from writing the same outputs.

Errors name the run's Python parameters (``{out}``, `geovae.errors`); the command line shows
its flags for them."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geovae.errors import Note, OptionError
from geovae.io.read import input_stem
from geovae.report.plot import PLOT_FORMATS

#: how a caller names a parameter reference: ``names(param, value)`` (`geovae.errors`)
Names = Callable[[str, str | None], str]


@dataclass
class RunResult:
    """What a file-level run wrote, for the CLI to report."""

    out: Path
    plot: Path | None = None
    model_dir: Path | None = None
    messages: list[str] = field(default_factory=list)
    metrics: Path | None = None
    #: how the run's notes name parameters (``names(param, value)``; the command line: its
    #: flags); None: as Python does (`geovae.errors.Note`)
    names: Names | None = None

    def say(self, message: str) -> str:
        """``message`` as the run's caller names parameters (a `Note` rendered)."""
        if isinstance(message, Note) and self.names is not None:
            return message.render(self.names)
        return message


@dataclass
class OutputPlan:
    """The outputs of one run, checked together before any data is read."""

    inputs: list[Path]
    out: Path
    plot: Path | None = None
    model_dir: Path | None = None
    extra: list[tuple[str, Path | None]] = field(default_factory=list)
    metrics: Path | None = None
    #: what ``out`` may end in (a report: .html)
    out_suffixes: tuple[str, ...] = (".h5ad",)
    #: the run's parameter for ``model_dir`` (transfer: ``new_model_dir``)
    model_dir_param: str = "model_dir"

    def outputs(self) -> list[tuple[str, Path]]:
        """(what names it, path) of each output: a parameter reference (``{out}``) or, for
        an ``extra`` output, its description."""
        named = [("{out}", self.out), ("{plot}", self.plot),
                 (f"{{{self.model_dir_param}}}", self.model_dir),
                 ("{metrics_json}", self.metrics), *self.extra]
        return [(name, p) for name, p in named if p is not None]

    def check(self) -> None:
        """Each output: right suffix, a writable existing folder, not an input, not another
        output, not a folder holding an input, and a model directory only where geovae may
        replace it."""
        from geovae.io.write import read_only_folders
        from geovae.models.persistence import is_model_dir

        inputs = [p.resolve() for p in self.inputs]
        outputs = self.outputs()
        read_only = read_only_folders([path.parent for _, path in outputs])
        seen: dict[Path, str] = {}
        for name, path in outputs:
            target = path.resolve()
            if target in inputs:
                raise OptionError(f"{name} '{path}' is an input of this run: geovae never "
                                  f"overwrites its input; choose another {name}")
            if any(inp in target.parents for inp in inputs):
                raise OptionError(f"{name} '{path}' is inside an input folder of this run: "
                                  f"geovae never writes into its inputs; choose another {name}")
            if any(target in inp.parents for inp in inputs):
                raise OptionError(f"{name} '{path}' is a folder that holds an input of this "
                                  f"run: choose another {name}")
            if target in seen:
                raise OptionError(f"{name} and {seen[target]} are the same path '{path}': "
                                  "give each output its own path")
            for other, other_name in seen.items():
                if other in target.parents or target in other.parents:
                    raise OptionError(f"{name} '{path}' and {other_name} '{other}' are nested: "
                                      "give each output its own place")
            seen[target] = name
            parent = path.parent
            if not parent.is_dir():
                raise OptionError(f"output folder '{parent}' of {name} does not exist: create "
                                  "it first")
            if parent in read_only:
                raise OptionError(f"output folder '{parent}' of {name} is on a read-only file "
                                  f"system: choose another {name}")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OptionError(f"output folder '{parent}' of {name} is not writable: choose "
                                  f"another {name} or fix its permissions")
            if path is not self.model_dir and path.is_dir():
                raise OptionError(f"{name} '{path}' is a folder: give a file name")
            if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
                raise OptionError(f"{name} '{path}' exists and is read-only: choose another "
                                  f"{name}")
        if self.out.suffix.lower() not in self.out_suffixes:
            raise OptionError(f"{{out}} '{self.out}' must end in "
                              + " or ".join(self.out_suffixes))
        if self.metrics is not None and self.metrics.suffix.lower() != ".json":
            raise OptionError(f"{{metrics_json}} '{self.metrics}' must end in .json")
        if self.plot is not None and self.plot.suffix.lower() not in PLOT_FORMATS:
            raise OptionError(f"{{plot}} '{self.plot}' must end in "
                              + ", ".join(PLOT_FORMATS) + " (the format follows the suffix)")
        if self.model_dir is not None and self.model_dir.exists():
            param = self.model_dir_param
            if not self.model_dir.is_dir():
                raise OptionError(f"{{opt}} '{self.model_dir}' exists and is not a folder: "
                                  "choose another {opt}", param=param)
            if not is_model_dir(self.model_dir):
                raise OptionError(f"{{opt}} '{self.model_dir}' exists and is not a geovae "
                                  "model directory: geovae only replaces folders it wrote; "
                                  "choose another {opt}", param=param)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold a lock beside ``out`` so two runs cannot write the same outputs at once."""
        from geovae.io.write import LIVE

        lock = self.out.parent / f".{self.out.name}.geovae-lock"
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OptionError(f"another geovae run is writing '{self.out}' now: wait for it "
                              "or choose another {out}") from None
        LIVE.add(lock)
        try:
            yield
        finally:
            LIVE.discard(lock)
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)


def default_outputs(input_path: str | os.PathLike) -> tuple[Path, Path]:
    """``data/x.csv.gz`` -> (``data/x.geovae.h5ad``, ``data/x.geovae.model``)."""
    p = Path(input_path)
    stem = input_stem(p)
    return p.with_name(f"{stem}.geovae.h5ad"), p.with_name(f"{stem}.geovae.model")


def plot_path(out: Path, plot: str | os.PathLike | None, umap: bool = True) -> Path | None:
    """The plot of a run: ``plot``, else OUT_STEM.umap.png; none without a UMAP."""
    if not umap:
        if plot:
            raise OptionError(f"{{plot}} '{plot}' needs the UMAP: drop {{umap=False}} or "
                              "{plot}")
        return None
    return Path(plot) if plot else out.with_name(out.name[: -len(".h5ad")] + ".umap.png")


def check_graph(n_neighbors: int) -> None:
    """``n_neighbors`` is checked before any work."""
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 2:
        raise OptionError(f"{{opt}} must be a whole number of at least 2, got {n_neighbors!r}",
                          param="n_neighbors")
