"""The count encoder's input (``encoder_input``): ``log1p`` of the raw counts (the default,
unchanged) or ``log1p_cp10k``, of counts scaled to 10,000 per cell. The sparse path gives
the dense path's numbers up to float rounding (its first layer sums the non-zeros in another
order, `geovae.nn.sparse_linear`), the prepared one the sparse one's bit for bit; depth drops
out; the choice is saved with the model; a bad value is one line."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import PBMC, run_cli

from geovae.errors import OptionError
from geovae.models import CGMVAE, GeoVAE


def _counts(n: int = 120, genes: int = 40, seed: int = 0) -> ad.AnnData:
    """Sparse NB-like counts with one all-zero cell and a batch column."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.gamma(0.5, 2.0, size=(n, genes))).astype(np.float32)
    x[0] = 0.0  # a cell without counts: no NaN, no inf
    a = ad.AnnData(sp.csr_matrix(x))
    a.obs["batch"] = np.where(np.arange(n) % 2, "b0", "b1")
    return a


def _module(cls: type, encoder_input: str | None, genes: int = 40, **kw: object):  # noqa: ANN202
    opts = {} if encoder_input is None else {"encoder_input": encoder_input}
    if cls is CGMVAE:
        opts["n_clusters"] = 3
    return cls(_counts(genes=genes), batch_key="batch", seed=0, n_hidden=16,
               model_options=opts, **kw)


@pytest.mark.parametrize("cls", [GeoVAE, CGMVAE])
@pytest.mark.parametrize("encoder_input", ["log1p", "log1p_cp10k"])
def test_sparse_and_prepared_encoder_input_is_the_dense_one(cls: type,
                                                            encoder_input: str) -> None:
    m = _module(cls, encoder_input, genes=300)
    module, source = m.module, m.source()
    module.eval()
    batch = source.take(torch.arange(100))
    assert hasattr(batch.x, "_geovae_nonzeros")  # the sparse path is the one tested
    dense_x = batch.x.clone()  # no non-zero entries attached: `transform`
    x_in = module.transform(dense_x)[0]
    assert torch.isfinite(x_in).all() and (x_in[0] == 0).all()  # the empty cell
    with torch.no_grad():
        # 300 features: enough that the sparse sums round differently from the dense product
        sparse = module.hidden_of(batch.x, batch.c)
        torch.testing.assert_close(sparse, module.hidden(x_in, batch.c))
        prepared = module.prepare(source.take(torch.arange(100)))
        assert hasattr(prepared.x, "_geovae_prepared_input")
        assert torch.equal(module.hidden_of(prepared.x, prepared.c), sparse)
    assert torch.equal(module._sparse_rows(batch.x).dense(), x_in)


def test_default_is_log1p_of_the_raw_counts_and_cp10k_removes_depth() -> None:
    x = torch.tensor([[0.0, 1.0, 4.0, 5.0], [2.0, 0.0, 0.0, 8.0], [0.0, 0.0, 0.0, 0.0]])
    default = _module(GeoVAE, None).module
    assert default.encoder_input == "log1p"
    assert torch.equal(default.transform(x)[0], torch.log1p(x))  # today's input, bit for bit
    cp10k = _module(GeoVAE, "log1p_cp10k").module
    got = cp10k.transform(x)[0]
    torch.testing.assert_close(got[:2], torch.log1p(1e4 * x[:2] / x[:2].sum(1, keepdim=True)))
    assert torch.equal(got[2], torch.zeros(4))
    # a cell sequenced 3x deeper: the same input (and the raw log1p differs)
    torch.testing.assert_close(cp10k.transform(3 * x)[0], got)
    assert not torch.allclose(default.transform(3 * x)[0], default.transform(x)[0])
    # ... and the library size the decoder gets still carries the depth
    torch.testing.assert_close(cp10k.transform(3 * x)[2], 3 * x.sum(1, keepdim=True))


@pytest.mark.parametrize("cls", [GeoVAE, CGMVAE])
def test_encoder_input_is_saved_loaded_and_kept_by_a_query(cls: type, tmp_path: Path) -> None:
    a = _counts()
    m = _module(cls, "log1p_cp10k")
    m.train(epochs=2, progress=False, device="cpu")
    assert m.config.model_options["encoder_input"] == "log1p_cp10k"
    m.save(tmp_path / "m")
    loaded = GeoVAE.load(tmp_path / "m")
    assert type(loaded) is cls and loaded.module.encoder_input == "log1p_cp10k"
    np.testing.assert_array_equal(loaded.get_latent(a), m.get_latent(a))
    query = cls.load_query(_counts(seed=1), tmp_path / "m", device="cpu")
    assert query.module.encoder_input == "log1p_cp10k"
    # the default is written out too, so a later default cannot change a saved model
    d = _module(cls, None)
    d.save(tmp_path / "d")
    assert GeoVAE.load(tmp_path / "d").config.model_options["encoder_input"] == "log1p"


def test_a_count_model_saved_before_the_option_loads_with_log1p(tmp_path: Path) -> None:
    import json

    m = _module(GeoVAE, None)
    m.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    meta = json.loads(cfg_path.read_text())
    del meta["config"]["model_options"]["encoder_input"]
    cfg_path.write_text(json.dumps(meta))
    old, GeoVAE.module_class.count_encoder_input = (GeoVAE.module_class.count_encoder_input,
                                                    "log1p_cp10k")
    try:  # even with another default, the old model reads log1p
        assert GeoVAE.load(tmp_path / "m").module.encoder_input == "log1p"
    finally:
        GeoVAE.module_class.count_encoder_input = old


def test_bad_encoder_input_in_python() -> None:
    with pytest.raises(OptionError, match="unknown .* 'cp10k': use log1p or log1p_cp10k"):
        _module(GeoVAE, "cp10k")
    a = _counts()
    a.X = a.X.toarray() + 0.5  # not counts
    with pytest.raises(OptionError, match="count likelihoods"):
        GeoVAE(a, likelihood="gaussian", model_options={"encoder_input": "log1p_cp10k"})
    plain = GeoVAE(a, likelihood="gaussian")
    assert plain.module.encoder_input is None and "encoder_input" not in \
        plain.config.model_options


@pytest.mark.parametrize(("args", "line"), [
    (["--encoder-input", "cp10k"], "unknown --encoder-input 'cp10k': choose log1p, "
                                   "log1p_cp10k"),
    (["--encoder-input", "log1p_cp10k", "--likelihood", "gaussian"],
     "--encoder-input 'log1p_cp10k' applies to count likelihoods (nb, zinb) only"),
])
def test_bad_encoder_input_on_the_command_line_is_one_line(tmp_path: Path, args: list[str],
                                                           line: str) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--quiet",
                  "--no-umap", *args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and line in err[0], err
    assert "Traceback" not in res.output and list(tmp_path.iterdir()) == []


def test_cli_flag_reaches_the_model_and_help_teaches_it(tmp_path: Path) -> None:
    import json

    res = run_cli("fit", "--help")
    assert "log1p_cp10k" in res.output and "sequencing depth" in " ".join(res.output.split())
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--model-dir", tmp_path / "m",
                  "--epochs", "1", "--quiet", "--no-umap", "--heldout-samples", "0",
                  "--encoder-input", "log1p_cp10k")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert cfg["model_options"]["encoder_input"] == "log1p_cp10k"
    record = ad.read_h5ad(tmp_path / "o.h5ad").uns["geovae"]["params"]["model_options"]
    assert record["encoder_input"] == "log1p_cp10k"  # in the output, not only the command


def test_the_run_record_holds_the_models_options() -> None:
    """``uns['geovae']['params']['model_options']``: every option in effect (given or
    default), plain Python values, so the record says which model made the latent."""
    import json

    m = CGMVAE(_counts(), batch_key="batch", seed=0, n_hidden=16, latent_dim=4,
               model_options={"encoder_input": "log1p_cp10k", "n_clusters": 3,
                              "y_temper": np.float32(0.5)})  # a numpy number given
    opts = m.summary()["params"]["model_options"]
    assert opts["encoder_input"] == "log1p_cp10k" and opts["n_clusters"] == 3
    assert type(opts["y_temper"]) is float and opts["y_temper"] == 0.5
    assert opts["w_dim"] == 4 and opts["mixture_weights"] == "global"
    assert set(opts) == set(CGMVAE.module_options())  # defaults too (prior_uses_w, ...)
    assert opts == json.loads(json.dumps(opts))  # JSON-safe
    assert _module(GeoVAE, None).summary()["params"]["model_options"] == \
        {"encoder_input": "log1p"}
