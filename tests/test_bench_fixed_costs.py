"""benchmarks/bench_fixed_costs.py times the UMAP the way `geovae.tools.cluster` runs it: its
"umap" row starts from the latent's principal components (`umap_init`) at geovae's default
epochs, learning rate and negative samples (here those above 10,000 cells), and its
"umap_100_epochs" row the earlier default. It once timed scanpy's spectral start under the PCA
start's name."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark

from geovae import _keys as K
from geovae.tools.cluster import umap_init, umap_settings


@pytest.mark.slow
def test_the_umap_row_is_the_umap_that_cluster_runs(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    import umap.umap_ as U

    bench = load_benchmark("bench_fixed_costs")
    real, starts = U.simplicial_set_embedding, []

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        starts.append((kwargs["n_epochs"], kwargs["negative_sample_rate"], kwargs["init"],
                       kwargs["initial_alpha"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(U, "simplicial_set_embedding", spy)
    # 400 cells take the default of more than 10,000 (70 epochs at 1.43, 1 negative sample)
    monkeypatch.setattr(importlib.import_module("geovae.tools.cluster"), "CHEAP_UMAP_CELLS", 100)
    latents = []
    record = tmp_path / "r.jsonl"
    monkeypatch.setattr(sys, "argv", ["bench_fixed_costs.py", "--cells", "400", "--genes", "30",
                                      "--epochs", "1", "--threads", "1", "--json", str(record)])
    from geovae.models import GeoVAE

    write = GeoVAE.write_outputs

    def keep(self, adata, source):  # noqa: ANN001, ANN202
        out = write(self, adata, source)
        latents.append(np.asarray(adata.obsm[K.REP]).copy())
        return out

    monkeypatch.setattr(GeoVAE, "write_outputs", keep)
    bench.main()
    rows = json.loads(record.read_text().splitlines()[-1])["extras"]
    want = umap_settings(400, None, latents[0].shape[1])
    assert tuple(want) == (70, 1, "pca", 1.43)

    def row(name: str) -> tuple:
        r = rows[name]
        return r["epochs"], r["negative_sample_rate"], r["init"], r["learning_rate"]

    assert row("umap") == tuple(want)
    n_epochs, negatives, start, rate = starts[1]  # starts[0]: the warm-up's
    assert (n_epochs, negatives, rate) == (want.n_epochs, want.negatives, want.learning_rate)
    expected = umap_init(latents[0], 0)
    assert isinstance(start, np.ndarray) and start.shape == expected.shape
    np.testing.assert_allclose(start, expected, rtol=1e-5, atol=1e-5)
    assert row("umap_100_epochs") == (100, 1, "pca", 1.0) and starts[2][::3] == (100, 1.0)
    assert row("umap_umap_learn_default")[2] == "spectral" and starts[3][2] == "spectral"
