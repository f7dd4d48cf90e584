"""benchmarks/bench_loto.py's arguments: ``--dev`` never runs the reported pbmc68k query (a
one-line error, exit 2), and ``--model-kw`` splits into `geovae.fit` keywords and model
options."""

from __future__ import annotations

import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def loto():  # noqa: ANN201
    return load_benchmark("bench_loto")


def test_dev_runs_the_kang_pairs_only(loto, capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    assert loto.check_pairs(None, dev=True) == ["kang_ctrl_stim", "kang_stim_ctrl"]
    assert loto.check_pairs(None, dev=False) == list(loto.PAIRS)
    assert loto.check_pairs(["kang_pbmc68k"], dev=False) == ["kang_pbmc68k"]
    with pytest.raises(SystemExit) as stop:
        loto.check_pairs(["kang_ctrl_stim", "kang_pbmc68k"], dev=True)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kang_pbmc68k" in err[0] and "reported query" in err[0], err


def test_model_kw_splits_fit_keywords_from_model_options(loto) -> None:  # noqa: ANN001
    assert loto.parse_model_kw("latent_dim=20") == ("latent_dim", 20)
    assert loto.parse_model_kw("encoder_input=log1p_cp10k") == ("encoder_input", "log1p_cp10k")
    fit_kw, options = loto.split_model_kw({"latent_dim": 20, "encoder_input": "log1p_cp10k"})
    assert fit_kw == {"latent_dim": 20} and options == {"encoder_input": "log1p_cp10k"}
