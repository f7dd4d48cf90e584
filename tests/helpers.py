"""Helpers shared by the tests: bundled data paths, an in-process CLI runner, hashing, the
c*GMΔVAE fitted on simulated counts."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from typer.testing import CliRunner

from geovae.cli import app

DATA = Path(__file__).resolve().parents[1] / "data"
PBMC = DATA / "pbmc68k_counts.h5ad"
DIGITS = DATA / "digits.csv.gz"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (benchmarks/ on sys.path for its own
    imports, e.g. ``_common``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_cli(*args: str):
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def mixture_on_counts(adata, k: int, seed: int, epochs: int | None,  # noqa: ANN001
                      **options: object) -> tuple[float, int]:
    """The default c*GMΔVAE with ``k`` components fitted to ``geovae.datasets.simulate_counts``
    data (NB, batch key ``condition``, one thread, no held-out IWAE): (ARI of argmax q(y|x)
    against ``cell_type``, components in use); ``options``: more model options."""
    import warnings

    from sklearn.metrics import adjusted_rand_score

    import geovae

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, model="cgmvae", model_options={"n_clusters": k, **options}, seed=seed,
                   epochs=epochs, progress=False, device="cpu", heldout_samples=0,
                   batch_key="condition", likelihood="nb", threads=1)
    pred = adata.obsm["geovae_cluster_probs"].argmax(1)
    return (adjusted_rand_score(adata.obs["cell_type"], pred),
            adata.uns["geovae"]["n_components_argmax"])
