"""Query mapping: architecture surgery keeps the reference exactly, only the new categories'
weights train under --freeze all, labels and unknown calls come out, the reference model
directory is never written, and bad inputs are one line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli

import geovae
from geovae import _keys as K
from geovae.datasets import make_blobs
from geovae.models.transfer import apply_freeze, grow


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def blobs_ref(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ad.AnnData]:
    """A reference VAE fitted on conditions cond0/cond1 of the blobs; the query has cond2."""
    d = tmp_path_factory.mktemp("transfer")
    a = make_blobs(n_cells=900, n_features=20, n_blobs=4, n_conditions=3, seed=0)
    ref = a[a.obs["condition"] != "cond2"].copy()
    query = a[a.obs["condition"] == "cond2"].copy()
    ref.write_h5ad(d / "ref.h5ad")
    query.write_h5ad(d / "query.h5ad")
    res = run_cli("fit", d / "ref.h5ad", "--out", d / "ref.out.h5ad", "--batch-key",
                  "condition", "--label-key", "blob", "--likelihood", "gaussian",
                  "--latent-dim", "4", "--epochs", "30", "--quiet")
    assert res.exit_code == 0, res.output
    return d, query


def test_grow_keeps_the_reference_function_exactly(blobs_ref) -> None:
    d, _ = blobs_ref
    ref = geovae.GeoVAE.load(d / "ref.out.model")
    grown, masks = grow(ref, [["cond2"]])
    assert grown.spec.batch_categories == [["cond0", "cond1", "cond2"]]
    assert set(masks) == {"encoder.0.weight", "decoder.0.weight"}
    assert all(int(m.sum()) == m.shape[0] for m in masks.values())  # one new column each
    x = torch.randn(16, 20)
    for code in (0, 1):
        c_old = torch.nn.functional.one_hot(torch.full((16,), code), 2).float()
        c_new = torch.nn.functional.one_hot(torch.full((16,), code), 3).float()
        torch.testing.assert_close(ref.module.latent_mean(x, c_old),
                                   grown.module.latent_mean(x, c_new), rtol=0, atol=0)
        z = torch.randn(16, 4)
        torch.testing.assert_close(ref.module.decoder_mean(z, c_old),
                                   grown.module.decoder_mean(z, c_new), rtol=0, atol=0)


def test_freeze_all_trains_only_new_columns(blobs_ref) -> None:
    d, query = blobs_ref
    ref = geovae.GeoVAE.load(d / "ref.out.model")
    grown, masks = grow(ref, [["cond2"]])
    before = {k: v.clone() for k, v in grown.module.state_dict().items()}
    handles = apply_freeze(grown.module, masks, "all")
    from geovae.training import Trainer, TrainSettings

    source = grown.source_of(grown.prepare(query))
    Trainer(grown.module, source, TrainSettings(epochs=3, warmup_fraction=0.0,
                                                weight_decay=0.0, progress=False)).fit()
    for h in handles:
        h.remove()
    after = grown.module.state_dict()
    for name, old in before.items():
        if name in masks:
            assert torch.equal(after[name][~masks[name]], old[~masks[name]]), name
            assert not torch.equal(after[name][masks[name]], old[masks[name]]), name
        else:
            assert torch.equal(after[name], old), name


def test_transfer_cli_labels_unknowns_and_untouched_reference(blobs_ref, tmp_path: Path) -> None:
    d, _ = blobs_ref
    before = _tree_hash(d / "ref.out.model")
    res = run_cli("transfer", d / "ref.out.model", d / "query.h5ad", "--out",
                  tmp_path / "q.h5ad", "--reference", d / "ref.out.h5ad", "--eval-key", "blob",
                  "--epochs", "20", "--quiet")
    assert res.exit_code == 0, res.output
    assert _tree_hash(d / "ref.out.model") == before, "the reference model was written to"
    q = ad.read_h5ad(tmp_path / "q.h5ad")
    for slot, key in [("obsm", K.REP), ("obs", K.LABEL), ("obs", K.LABEL_CONFIDENCE),
                      ("obsm", K.LABEL_PROBS), ("obsm", K.UMAP)]:
        assert key in getattr(q, slot), key
    info = q.uns[K.UNS]["transfer"]
    assert list(info["new_categories"]["condition"]) == ["cond2"]
    assert info["accuracy"] > 0.9, info  # well-separated blobs
    assert 0 <= info["fraction_unknown"] <= 0.2
    joint = ad.read_h5ad(tmp_path / "q.joint.h5ad")
    assert set(joint.obs[K.SOURCE]) == {"reference", "query"} and K.UMAP in joint.obsm
    assert (tmp_path / "q.joint.png").read_bytes()[:4] == b"\x89PNG"
    # the new model reloads in a fresh process and embeds the query to the same latent
    code = ("import geovae, numpy as np, anndata as ad;"
            f"m = geovae.GeoVAE.load(r'{tmp_path / 'q.model'}');"
            f"z = m.get_latent(ad.read_h5ad(r'{d / 'query.h5ad'}'));"
            f"print(np.abs(z - ad.read_h5ad(r'{tmp_path / 'q.h5ad'}').obsm['X_geovae']).max())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


def test_query_far_from_reference_gets_low_confidence(blobs_ref) -> None:
    """Cells of a blob the reference never saw are less confident than the rest."""
    d, query = blobs_ref
    ref = geovae.GeoVAE.load(d / "ref.out.model")
    novel = query.copy()
    rng = np.random.default_rng(5)
    novel.X[:50] = rng.normal(8.0, 1.0, (50, novel.n_vars)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.transfer(novel, ref, epochs=10, progress=False)
    conf = novel.obs[K.LABEL_CONFIDENCE].to_numpy()
    from sklearn.metrics import roc_auc_score

    is_novel = np.arange(novel.n_obs) < 50
    assert roc_auc_score(is_novel, -conf) > 0.9
    assert (novel.obs[K.LABEL][:50] == "unknown").mean() > 0.8


@pytest.mark.parametrize(("make", "args", "mention"), [
    ("missing_model", [], "is not a geovae model directory"),
    ("no_overlap", [], "shares no feature names"),
    ("no_batch_column", [], "'condition' is not a column of obs"),
    ("other_key", ["--batch-key", "blob"], "trained with batch key(s) ['condition']"),
    ("empty", [], "holds no data"),
])
def test_transfer_bad_inputs(blobs_ref, tmp_path: Path, make: str, args: list[str],
                             mention: str) -> None:
    d, query = blobs_ref
    model = d / "ref.out.model"
    q = query.copy()
    if make == "missing_model":
        model = tmp_path / "nope"
    elif make == "no_overlap":
        q.var_names = [f"other{i}" for i in range(q.n_vars)]
    elif make == "no_batch_column":
        del q.obs["condition"]
    elif make == "empty":
        q = q[:0].copy()
    path = tmp_path / "q.h5ad"
    q.write_h5ad(path)
    before = {p.name for p in tmp_path.iterdir()}
    ref_hash = _tree_hash(d / "ref.out.model")
    res = run_cli("transfer", model, path, "--out", tmp_path / "o.h5ad", "--quiet", *args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
    assert mention in res.stderr, res.stderr
    assert {p.name for p in tmp_path.iterdir()} == before
    assert _tree_hash(d / "ref.out.model") == ref_hash


def test_counts_query_for_a_count_reference_rejects_negative_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = ad.AnnData(rng.poisson(2.0, (60, 12)).astype(np.float32),
                   obs=pd.DataFrame({"b": ["x"] * 60}, index=[f"c{i}" for i in range(60)]))
    a.var_names = [f"g{j}" for j in range(12)]
    a.write_h5ad(tmp_path / "r.h5ad")
    assert run_cli("fit", tmp_path / "r.h5ad", "--out", tmp_path / "r.out.h5ad", "--batch-key",
                   "b", "--epochs", "2", "--quiet").exit_code == 0
    q = a.copy()
    q.X = rng.normal(0.0, 1.0, q.shape).astype(np.float32)  # log-normalised-like values
    q.write_h5ad(tmp_path / "q.h5ad")
    res = run_cli("transfer", tmp_path / "r.out.model", tmp_path / "q.h5ad", "--out",
                  tmp_path / "q.out.h5ad", "--quiet")
    assert res.exit_code == 2 and "cannot be a count" in res.stderr, res.output
