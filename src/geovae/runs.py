"""File-level runs behind the CLI and the workflows: check every output location before
reading anything, read, compute, stage every output, then commit them in one step.

What geovae promises about files: it never overwrites its input, never deletes what it did
not write (a model directory replaces only a geovae model directory), and an interrupted or
failed run leaves either all of its new outputs or the old ones untouched, with no temporary
files (a killed run's temporaries are removed by the next run).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geovae import _keys as K
from geovae.errors import OptionError
from geovae.io.read import check_readable, input_stem
from geovae.report.plot import PLOT_FORMATS


@dataclass
class RunResult:
    """What a file-level run wrote, for the CLI to report."""

    out: Path
    plot: Path | None = None
    model_dir: Path | None = None
    messages: list[str] = field(default_factory=list)


@dataclass
class OutputPlan:
    """The outputs of one run, checked together before any data is read."""

    inputs: list[Path]
    out: Path
    plot: Path | None = None
    model_dir: Path | None = None

    def outputs(self) -> list[tuple[str, Path]]:
        named = [("--out", self.out), ("--plot", self.plot), ("--model-dir", self.model_dir)]
        return [(flag, p) for flag, p in named if p is not None]

    def check(self) -> None:
        """Each output: right suffix, a writable existing folder, not an input, not another
        output, not a folder holding an input, and a model directory only where geovae may
        replace it."""
        from geovae.models.persistence import is_model_dir

        inputs = [p.resolve() for p in self.inputs]
        seen: dict[Path, str] = {}
        for flag, path in self.outputs():
            target = path.resolve()
            if target in inputs:
                raise OptionError(f"{flag} '{path}' is an input of this run: geovae never "
                                  f"overwrites its input; choose another {flag}")
            if any(inp in target.parents for inp in inputs):
                raise OptionError(f"{flag} '{path}' is inside an input folder of this run: "
                                  f"geovae never writes into its inputs; choose another {flag}")
            if any(target in inp.parents for inp in inputs):
                raise OptionError(f"{flag} '{path}' is a folder that holds an input of this "
                                  f"run: choose another {flag}")
            if target in seen:
                raise OptionError(f"{flag} and {seen[target]} are the same path '{path}': "
                                  "give each output its own path")
            for other, flag2 in seen.items():
                if other in target.parents or target in other.parents:
                    raise OptionError(f"{flag} '{path}' and {flag2} '{other}' are nested: "
                                      "give each output its own place")
            seen[target] = flag
            parent = path.parent
            if not parent.is_dir():
                raise OptionError(f"output folder '{parent}' of {flag} does not exist: create "
                                  "it first")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OptionError(f"output folder '{parent}' of {flag} is not writable: choose "
                                  f"another {flag} or fix its permissions")
            if flag != "--model-dir" and path.is_dir():
                raise OptionError(f"{flag} '{path}' is a folder: give a file name")
            if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
                raise OptionError(f"{flag} '{path}' exists and is read-only: choose another "
                                  f"{flag}")
        if self.out.suffix.lower() != ".h5ad":
            raise OptionError(f"--out '{self.out}' must end in .h5ad")
        if self.plot is not None and self.plot.suffix.lower() not in PLOT_FORMATS:
            raise OptionError(f"--plot '{self.plot}' must end in "
                              + ", ".join(PLOT_FORMATS) + " (the format follows the suffix)")
        if self.model_dir is not None and self.model_dir.exists():
            if not self.model_dir.is_dir():
                raise OptionError(f"--model-dir '{self.model_dir}' exists and is not a folder: "
                                  "choose another --model-dir")
            if not is_model_dir(self.model_dir):
                raise OptionError(f"--model-dir '{self.model_dir}' exists and is not a geovae "
                                  "model directory: geovae only replaces folders it wrote; "
                                  "choose another --model-dir")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold a lock beside --out so two runs cannot write the same outputs at once."""
        from geovae.io.write import LIVE

        lock = self.out.parent / f".{self.out.name}.geovae-lock"
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OptionError(f"another geovae run is writing '{self.out}' now: wait for it "
                              "or choose another --out") from None
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


def plot_path(out: Path, plot: str | os.PathLike | None) -> Path:
    return Path(plot) if plot else out.with_name(out.name[: -len(".h5ad")] + ".umap.png")


def run_fit(input_path: str | os.PathLike, out: str | os.PathLike | None = None,
            model_dir: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
            resolution: float = 1.0, command: str | None = None,
            obs_columns: list[str] | tuple[str, ...] = (), **fit_kwargs: Any) -> RunResult:
    """Read ``input_path``, fit, cluster, plot; write OUT.h5ad, the plot and the model.

    ``obs_columns``: table columns that are metadata, not features (the batch and label
    columns always are)."""
    input_path = Path(input_path)
    default_out, default_model = default_outputs(input_path)
    out_p = Path(out) if out else default_out
    model_p = Path(model_dir) if model_dir else (default_model if not out else
                                                 out_p.with_name(out_p.name[:-5] + ".model"))
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot), model_p)
    plan.check()
    check_readable(input_path)
    from geovae.io.read import read
    from geovae.tools.fit import fit

    keys = [*(fit_kwargs.get("batch_key") or []), fit_kwargs.get("label_key")]
    with plan.lock():
        adata = read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k])
        model = fit(adata, **fit_kwargs)
        result = RunResult(out=out_p, model_dir=model_p, plot=plan.plot)
        result.messages += model.notes
        hist = model.history
        if hist is not None and hist.stopped_early:
            result.messages.append(f"early stopping after epoch {len(hist.train)}; the weights "
                                   f"of the best validation epoch ({hist.best_epoch + 1}) "
                                   "were kept")
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        _finish(adata, plan, method, resolution, fit_kwargs.get("seed", 0), command,
                [model.spec.label_key or "", *model.spec.batch_keys], model)
    return result


def run_embed(model_dir: str | os.PathLike, input_path: str | os.PathLike,
              out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
              resolution: float = 1.0, device: str = "cpu", command: str | None = None,
              volume: bool = False, obs_columns: list[str] | tuple[str, ...] = ()
              ) -> RunResult:
    """Embed a new file with a saved model; cluster, plot and write OUT.h5ad."""
    from geovae.models import GeoVAE

    input_path = Path(input_path)
    out_p = Path(out) if out else default_outputs(input_path)[0]
    plan = OutputPlan([input_path, Path(model_dir)], out_p, plot_path(out_p, plot))
    plan.check()
    check_readable(input_path)
    model = GeoVAE.load(model_dir, device=device)
    from geovae.io.read import read
    from geovae.tools.fit import embed

    keys = [*model.spec.batch_keys, model.spec.label_key]
    with plan.lock():
        adata = read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k])
        embed(adata, model, volume=volume)
        result = RunResult(out=out_p, plot=plan.plot)
        info = adata.uns[K.UNS]
        if info["n_missing_features"]:
            result.messages.append(f"{info['n_missing_features']} of the model's "
                                   f"{model.spec.n_features} features are missing from the "
                                   "input and were filled with zeros")
        if info["n_extra_features"]:
            result.messages.append(f"{info['n_extra_features']} input features unknown to the "
                                   "model were ignored")
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        _finish(adata, plan, method, resolution, model.config.seed, command,
                [model.spec.label_key or "", *model.spec.batch_keys], None)
    return result


def run_cluster(input_path: str | os.PathLike, out: str | os.PathLike,
                use_rep: str = K.REP, resolution: float = 1.0, method: str = "leiden",
                plot: str | os.PathLike | None = None, seed: int = 0,
                command: str | None = None) -> RunResult:
    """Cluster an embedding already in a file; writes OUT.h5ad and a UMAP plot."""
    input_path = Path(input_path)
    out_p = Path(out)
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot))
    plan.check()
    check_readable(input_path)
    from geovae.io.read import read

    with plan.lock():
        adata = read(input_path)
        _finish(adata, plan, method, resolution, seed, command, [], None, use_rep=use_rep)
    return RunResult(out=out_p, plot=plan.plot)


def _finish(adata: Any, plan: OutputPlan, method: str, resolution: float, seed: int,
            command: str | None, colors: list[str], model: Any, use_rep: str = K.REP) -> None:
    """Cluster, then stage the plot, the model and the h5ad and commit them together."""
    from geovae.io.write import OutputSet
    from geovae.models.persistence import write_model_files
    from geovae.report.plot import save_figure, umap_figure
    from geovae.tools.cluster import cluster
    from geovae.tools.record import update_record

    cluster(adata, use_rep=use_rep, resolution=resolution, seed=seed, method=method)
    update_record(adata, command=command or " ".join(sys.argv))
    with OutputSet() as outputs:
        if plan.plot is not None:
            save_figure(umap_figure(adata, [c for c in colors if c]),
                        outputs.stage(plan.plot), plan.plot)
        if model is not None and plan.model_dir is not None:
            write_model_files(model, outputs.stage(plan.model_dir, directory=True))
        adata.write_h5ad(outputs.stage(plan.out))
        outputs.commit()


def run_simulate(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write simulated negative-binomial counts (`geovae.datasets.simulate_counts`)."""
    from geovae.datasets import simulate_counts

    return _write_dataset(Path(out), simulate_counts, kwargs)


def run_blobs(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write conditional Gaussian blobs (`geovae.datasets.make_blobs`)."""
    from geovae.datasets import make_blobs

    return _write_dataset(Path(out), make_blobs, kwargs)


def _write_dataset(out: Path, make: Any, kwargs: dict[str, Any]) -> RunResult:
    from geovae.io.write import OutputSet

    plan = OutputPlan([], out)
    plan.check()
    adata = make(**kwargs)
    with plan.lock(), OutputSet() as outputs:
        adata.write_h5ad(outputs.stage(out))
        outputs.commit()
    return RunResult(out=out, messages=[f"{adata.n_obs} cells x {adata.n_vars} features"])


__all__ = ["OutputPlan", "RunResult", "default_outputs", "run_blobs",
           "run_cluster", "run_embed", "run_fit", "run_simulate"]
