"""Out-of-core (backed) mode: the same model as in memory, every cell once per epoch, X never
loaded whole, streaming checks, backed outputs and clear errors."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from helpers import run_cli

from geovae.data import h5 as h5mod
from geovae.data.backed import BackedSource
from geovae.data.sources import InMemorySource
from geovae.errors import InputError, OptionError
from geovae.io.backed import read_backed, write_backed
from geovae.models import GeoVAE

CPU = torch.device("cpu")


def _counts(n: int = 600, g: int = 40, seed: int = 0, dense: bool = False) -> ad.AnnData:
    """NB counts with 3 cell types (in file order: sorted by type) and a batch column."""
    rng = np.random.default_rng(seed)
    types = np.sort(rng.integers(0, 3, n))
    mu = rng.gamma(1.0, 2.0, size=(3, g))[types] * rng.uniform(0.5, 1.5, size=(n, 1))
    X = rng.negative_binomial(2, 2 / (2 + mu)).astype(np.float32)
    obs = pd.DataFrame({"b": rng.choice(["x", "y"], n), "type": types.astype(str)},
                       index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=X if dense else sp.csr_matrix(X), obs=obs,
                      var=pd.DataFrame(index=[f"g{j}" for j in range(g)]))


@pytest.fixture
def counts_file(tmp_path: Path) -> Path:
    path = tmp_path / "counts.h5ad"
    _counts().write_h5ad(path)
    return path


def _backed_model(path: Path, block_rows: int, window: int, **kw) -> GeoVAE:
    model = GeoVAE(read_backed(path), **kw)
    model._source = BackedSource(model.prepared, model.spec.n_categories, CPU,
                                 block_rows=block_rows, window=window)
    return model


def test_backed_one_block_is_bit_identical_to_in_memory(tmp_path: Path) -> None:
    """One block and one window: the backed order is the in-memory permutation and the rows
    are the same float32 values with the same non-zeros attached (the encoder's sparse first
    layer, `geovae.nn.sparse_linear`), so training is the same computation, bit for bit. 300
    features: enough that a dense first layer's sums would round differently."""
    counts_file = tmp_path / "wide.h5ad"
    _counts(g=300).write_h5ad(counts_file)
    mem = GeoVAE(ad.read_h5ad(counts_file), batch_key="b", seed=3)
    h_mem = mem.train(epochs=3, progress=False, device="cpu")
    bk = _backed_model(counts_file, 10**6, 10**6, batch_key="b", seed=3)
    h_bk = bk.train(epochs=3, progress=False, device="cpu")
    assert h_bk.train == h_mem.train and h_bk.validation == h_mem.validation
    np.testing.assert_array_equal(bk.get_latent(), mem.get_latent())


def test_backed_small_blocks_statistically_equivalent(counts_file: Path) -> None:
    """Small blocks change only the minibatch order: the final validation -ELBO lies within
    the spread of in-memory fits over seeds (not bit-identical: another random order)."""
    def val(model: GeoVAE) -> float:
        return model.train(epochs=8, progress=False, device="cpu").validation[-1]

    mem = [val(GeoVAE(ad.read_h5ad(counts_file), batch_key="b", seed=s)) for s in range(3)]
    bk = [val(_backed_model(counts_file, 32, 128, batch_key="b", seed=s)) for s in range(3)]
    spread = max(np.ptp(mem), 0.005 * abs(np.mean(mem)))
    assert abs(np.mean(bk) - np.mean(mem)) < 2 * spread, (mem, bk)


@pytest.mark.parametrize(("block_rows", "window"), [(7, 20), (50, 64), (50, 200), (1000, 100)])
def test_shuffle_and_batches_visit_every_cell_once(counts_file: Path, block_rows: int,
                                                   window: int) -> None:
    model = GeoVAE(read_backed(counts_file))
    prepared = model.prepared
    prepared.labels = np.arange(prepared.n_obs)  # labels carry the cell index
    src = BackedSource(prepared, [], CPU, block_rows=block_rows, window=window)
    ref = ad.read_h5ad(counts_file).X.toarray()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(600, generator=gen)[:541]  # a training subset in random order
    for _ in range(2):  # two epochs, two different orders
        order = src.shuffle(idx, gen)
        assert sorted(order.tolist()) == sorted(idx.tolist())
        seen, before = [], src.matrix.rows_read
        for batch in src.batches(order, 32, drop_last=False):
            cells = batch.labels.numpy()
            np.testing.assert_array_equal(batch.x.numpy(), ref[cells])
            seen += cells.tolist()
        assert seen == order.tolist()  # every cell exactly once, in the given order
        # each block read about once per epoch (a block shared by two windows: twice)
        n_windows = -(-len(idx) // window)
        assert src.matrix.rows_read - before <= 600 + 2 * min(block_rows, 600) * n_windows
    if window > 2 * block_rows:  # minibatches mix blocks: not runs of neighbouring cells
        first = next(iter(src.batches(order, 32)))
        assert len(np.unique(first.labels.numpy() // block_rows)) > 1
    if block_rows < 600:  # blocks in random order, not the file's
        blocks = (order.numpy() // block_rows)
        assert not np.all(np.diff(blocks[::window]) >= 0)


def test_backed_does_not_materialise_x(tmp_path: Path, monkeypatch) -> None:
    """A backed fit holds at most one scan chunk, two windows of rows and a minibatch, never
    X: its traced peak (numpy and h5py allocations) barely moves when X grows 4x (only obs
    names and the latent grow), while the in-memory fit's peak exceeds X; every block is read
    about once per pass."""
    monkeypatch.setattr(h5mod, "CHUNK_VALUES", 50_000)  # scan chunks of 200 kB (not 4 MB)

    def peak(make, train: bool = True) -> tuple[int, GeoVAE]:
        tracemalloc.start()
        model = make()
        if train:
            model.train(epochs=1, progress=False, device="cpu", validation_fraction=0.0,
                        test_fraction=0.0)
            model.get_latent()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, model

    paths, x_bytes = {}, {}
    for n in (2048, 8192):  # whole 1024-cell batches of the latent in both
        paths[n] = tmp_path / f"x{n}.h5ad"
        _counts(n=n, g=300, dense=True).write_h5ad(paths[n])
        x_bytes[n] = n * 300 * 4  # 2.5 and 9.8 MB
    warm = _backed_model(paths[2048], 32, 128)  # import what training imports, untraced
    warm.train(epochs=1, progress=False, device="cpu", validation_fraction=0.0,
               test_fraction=0.0)
    mem_peak, _ = peak(lambda: GeoVAE(ad.read_h5ad(paths[8192])), train=False)
    assert mem_peak > x_bytes[8192]  # the in-memory set-up alone holds X (twice)
    small, _ = peak(lambda: _backed_model(paths[2048], 32, 128))
    large, bk = peak(lambda: _backed_model(paths[8192], 32, 128))
    # what may grow with the cells: obs names as Python strings (about 60 B each, decoded by
    # anndata; their transient peak coincides with training's or not, depending on what ran
    # before), int64 codes and labels, the float32 latent: at most 150 B a cell. X would add
    # 1,200 B a cell (300 float32), 7.4 MB here.
    allowed = 0.1 * (x_bytes[8192] - x_bytes[2048]) + 150 * (8192 - 2048)
    assert large - small < allowed, (small, large, allowed)
    src = bk._source
    assert src.peak_rows <= 2 * 128 + 1024  # two windows + the latent's 1024-cell batches
    # setup scan, one training epoch and the latent: 3 passes; never a read per cell
    assert src.matrix.rows_read <= 3 * 8192 + 32 * 4


def test_streaming_checks_find_problems_in_later_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(h5mod, "CHUNK_VALUES", 200)  # many chunks
    a = _counts()
    X = a.X.toarray()
    X[590, 3] = np.nan
    bad = ad.AnnData(X=sp.csr_matrix(X), obs=a.obs, var=a.var)
    bad.write_h5ad(tmp_path / "nan.h5ad")
    with pytest.raises(InputError, match="NaN/Inf.*'c590'.*'g3'"):
        GeoVAE(read_backed(tmp_path / "nan.h5ad"))
    X[590, 3] = 2.5
    ad.AnnData(X=sp.csr_matrix(X), obs=a.obs, var=a.var).write_h5ad(tmp_path / "frac.h5ad")
    with pytest.raises(InputError, match="non-integer value 2.5 at cell 'c590'"):
        GeoVAE(read_backed(tmp_path / "frac.h5ad"), likelihood="nb")
    m = GeoVAE(read_backed(tmp_path / "frac.h5ad"))  # auto: not counts anywhere -> gaussian
    mem = GeoVAE(ad.read_h5ad(tmp_path / "frac.h5ad"))
    assert m.spec.likelihood == mem.spec.likelihood == "gaussian"
    np.testing.assert_allclose(m.spec.center, mem.spec.center, rtol=1e-5)
    np.testing.assert_allclose(m.spec.scale, mem.spec.scale, rtol=1e-4)
    zero = ad.AnnData(X=sp.csr_matrix((600, 40), dtype=np.float32), obs=a.obs, var=a.var)
    zero.write_h5ad(tmp_path / "zero.h5ad")
    with pytest.raises(InputError, match="every value of the data is zero"):
        GeoVAE(read_backed(tmp_path / "zero.h5ad"))


def test_backed_options_and_formats_refused_clearly(tmp_path: Path, counts_file: Path) -> None:
    with pytest.raises(OptionError, match="n_top_genes.*backed=True"):
        GeoVAE(read_backed(counts_file), n_top_genes=10)
    with pytest.raises(OptionError, match="layer='raw' is not supported with backed=True"):
        GeoVAE(read_backed(counts_file), layer="raw")
    with pytest.raises(OptionError, match="layer 'counts' not found"):
        GeoVAE(read_backed(counts_file), layer="counts")
    a = _counts()
    a.X = sp.csc_matrix(a.X)
    a.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(InputError, match="csc_matrix.*CSR or dense"):
        GeoVAE(read_backed(tmp_path / "csc.h5ad"))


def test_cli_backed_csv_is_a_one_line_error(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame(np.ones((20, 3)), columns=list("abc")).to_csv(table)
    before = table.read_bytes()
    res = run_cli("fit", table, "--backed", "--epochs", "1")
    assert res.exit_code == 2
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--backed reads .h5ad files only" in lines[0], res.output
    assert table.read_bytes() == before and not list(tmp_path.glob("t.geovae*"))


def test_backed_dense_and_embed_match_in_memory(tmp_path: Path) -> None:
    """A dense X on disk; embed with features in another order and one missing: the same
    latent as the in-memory embed (columns matched by name chunk by chunk)."""
    path = tmp_path / "dense.h5ad"
    _counts(dense=True).write_h5ad(path)
    model = GeoVAE(ad.read_h5ad(path), seed=1)
    model.train(epochs=2, progress=False, device="cpu")
    a = ad.read_h5ad(path)
    q = a[:, a.var_names[::-1][:-1]]  # reversed, g0 missing
    q = ad.AnnData(X=sp.csr_matrix(q.X), obs=q.obs, var=q.var)
    q.write_h5ad(tmp_path / "query.h5ad")
    z_mem = model.get_latent(ad.read_h5ad(tmp_path / "query.h5ad"))
    z_bk = model.get_latent(read_backed(tmp_path / "query.h5ad"))
    np.testing.assert_array_equal(z_bk, z_mem)
    assert model.prepare(read_backed(tmp_path / "query.h5ad")).n_missing_features == 1


def test_write_backed_keeps_the_file_and_adds_keys(tmp_path: Path, counts_file: Path) -> None:
    a = _counts()
    a.layers["counts"] = a.X.copy()
    a.obsp["user_graph"] = sp.identity(600, format="csr")
    a.write_h5ad(counts_file)
    b = read_backed(counts_file)
    assert b.X is None and len(b.layers) == 0  # layers and obsp stay on disk
    b.obsm["X_geovae"] = np.ones((600, 2), np.float32)
    b.obs["geovae_cluster"] = pd.Categorical(["0"] * 600)
    b.obsp["geovae_neighbors_distances"] = sp.csr_matrix((600, 600))
    b.uns["geovae"] = {"model": "vae"}
    write_backed(b, tmp_path / "out.h5ad")
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert (out.X != a.X).nnz == 0 and (out.layers["counts"] != a.X).nnz == 0
    assert set(out.obsp) == {"user_graph", "geovae_neighbors_distances"}
    assert out.uns["geovae"]["model"] == "vae" and "geovae_cluster" in out.obs
    np.testing.assert_array_equal(out.obsm["X_geovae"], 1)
    with h5py.File(counts_file) as f:
        assert "geovae" not in f["uns"]  # the input is untouched


def test_should_back_threshold(counts_file: Path) -> None:
    nnz = ad.read_h5ad(counts_file).X.nnz
    need = nnz * h5mod.BYTES_PER_VALUE
    assert h5mod.should_back(counts_file, available=int(need / h5mod.AUTO_SHARE) - 1)
    assert not h5mod.should_back(counts_file, available=int(need / h5mod.AUTO_SHARE) + 1)
    assert not h5mod.should_back(counts_file.with_suffix(".csv"), available=1)


def test_in_memory_shuffle_is_the_old_permutation() -> None:
    """The trainer's order for in-memory data is unchanged: idx[randperm(n)]."""
    prep = type("P", (), {"X": np.zeros((5, 2), np.float32), "batch": np.zeros((5, 0), int),
                          "labels": np.zeros(5, int)})()
    src = InMemorySource(prep, [], CPU)
    idx = torch.arange(10, 15)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert src.shuffle(idx, g1).tolist() == idx[torch.randperm(5, generator=g2)].tolist()


@pytest.mark.slow
def test_cli_fit_embed_transfer_backed(tmp_path: Path, counts_file: Path) -> None:
    """The three commands run backed end to end: outputs hold the input's X untouched plus
    the latent, and embed's latent equals the in-memory embed's."""
    fit_out, model = tmp_path / "fit.h5ad", tmp_path / "model"
    res = run_cli("fit", counts_file, "--backed", "--out", fit_out, "--model-dir", model,
                  "--epochs", "2", "--batch-key", "b", "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    src = ad.read_h5ad(counts_file)
    out = ad.read_h5ad(fit_out)
    assert (out.X != src.X).nnz == 0 and out.obsm["X_geovae"].shape == (600, 10)
    assert any("backed" in n for n in out.uns["geovae"]["notes"])
    res = run_cli("embed", model, counts_file, "--backed", "--out", tmp_path / "e_b.h5ad",
                  "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    res = run_cli("embed", model, counts_file, "--no-backed", "--out", tmp_path / "e_m.h5ad",
                  "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    z_b = ad.read_h5ad(tmp_path / "e_b.h5ad").obsm["X_geovae"]
    np.testing.assert_array_equal(z_b, ad.read_h5ad(tmp_path / "e_m.h5ad").obsm["X_geovae"])
    q = _counts(n=200, seed=5)
    q.obs["b"] = "z"  # a new batch category: trained by surgery, from the backed query
    q.write_h5ad(tmp_path / "query.h5ad")
    res = run_cli("transfer", model, tmp_path / "query.h5ad", "--backed", "--out",
                  tmp_path / "t.h5ad", "--epochs", "2", "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    t = ad.read_h5ad(tmp_path / "t.h5ad")
    assert (t.X != q.X).nnz == 0 and t.obsm["X_geovae"].shape == (200, 10)
    assert list(t.uns["geovae"]["transfer"]["new_categories"]["b"]) == ["z"]
