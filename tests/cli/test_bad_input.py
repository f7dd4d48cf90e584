"""Bad inputs: exit code 2, one clear line, input untouched, nothing left behind."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import PBMC, run_cli, sha256


def _assert_clean_failure(res, tmp_path: Path, before: set[str], inputs: dict[Path, str],
                          must_mention: str) -> None:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert "Traceback" not in res.output
    assert len(err.splitlines()) == 1, err  # one line
    assert must_mention.lower() in err.lower(), err
    for path, digest in inputs.items():
        assert sha256(path) == digest, f"{path} was modified"
    assert {p.name for p in tmp_path.iterdir()} == before, "an output was left behind"


def _fail(tmp_path: Path, input_path: Path, args: list[str], must_mention: str,
          command: str = "fit") -> None:
    before = {p.name for p in tmp_path.iterdir()}
    inputs = {input_path: sha256(input_path)} if input_path.exists() else {}
    if command == "fit":
        res = run_cli("fit", input_path, "--out", tmp_path / "out.h5ad", "--epochs", "2",
                      "--quiet", *args)
    else:
        res = run_cli(command, *args)
    _assert_clean_failure(res, tmp_path, before, inputs, must_mention)


def test_missing_file(tmp_path: Path) -> None:
    _fail(tmp_path, tmp_path / "nope.h5ad", [], "does not exist")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    _fail(tmp_path, p, [], "is empty")


def test_truncated_h5ad(tmp_path: Path) -> None:
    p = tmp_path / "trunc.h5ad"
    p.write_bytes(PBMC.read_bytes()[:20000])
    _fail(tmp_path, p, [], "corrupt or truncated")


def test_not_h5ad_at_all(tmp_path: Path) -> None:
    p = tmp_path / "text.h5ad"
    p.write_text("this is not hdf5\n")
    _fail(tmp_path, p, [], "cannot read")


def test_ragged_csv(tmp_path: Path) -> None:
    p = tmp_path / "ragged.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    _fail(tmp_path, p, [], "line 3 has 2 fields")


def test_stray_value_names_row_and_column(tmp_path: Path) -> None:
    p = tmp_path / "stray.csv"
    rows = ["g1,g2,g3"] + [f"{i},{i + 1},{i + 2}" for i in range(10)]
    rows[5] = "4,oops,6"
    p.write_text("\n".join(rows) + "\n")
    _fail(tmp_path, p, [], "column 'g2'")
    res = run_cli("fit", p, "--out", tmp_path / "o.h5ad", "--quiet")
    assert "row 5" in res.stderr and "oops" in res.stderr


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_values(tmp_path: Path, bad: float) -> None:
    p = tmp_path / "nan.csv.gz"
    X = np.arange(40, dtype=float).reshape(10, 4)
    X[3, 2] = bad
    text = "g0,g1,g2,g3\n" + "\n".join(",".join(str(v) for v in row) for row in X) + "\n"
    with gzip.open(p, "wt") as fh:
        fh.write(text)
    _fail(tmp_path, p, [], "NaN/Inf")


def test_nan_in_h5ad(tmp_path: Path) -> None:
    a = ad.AnnData(np.ones((20, 5), dtype=np.float32))
    a.X[2, 3] = np.nan
    p = tmp_path / "nan.h5ad"
    a.write_h5ad(p)
    _fail(tmp_path, p, [], "cell '2', feature '3'")


def test_negative_values_with_nb(tmp_path: Path) -> None:
    p = tmp_path / "neg.csv"
    X = np.abs(np.random.default_rng(0).normal(size=(20, 4))).round(0)
    X[7, 1] = -3
    p.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in X) + "\n")
    _fail(tmp_path, p, ["--likelihood", "nb"], "negative value -3")


def test_unknown_batch_key(tmp_path: Path, pbmc_copy: Path) -> None:
    _fail(tmp_path, pbmc_copy, ["--batch-key", "no_such_column"], "no_such_column")


def test_unknown_layer(tmp_path: Path, pbmc_copy: Path) -> None:
    _fail(tmp_path, pbmc_copy, ["--layer", "counts"], "layer 'counts' not found")


def test_cuda_without_gpu(tmp_path: Path, pbmc_copy: Path) -> None:
    import torch

    if torch.cuda.is_available():  # the point is the no-GPU message; on a GPU it would train
        pytest.skip("a GPU is present")
    _fail(tmp_path, pbmc_copy, ["--device", "cuda"], "no CUDA GPU")


def test_unsupported_format(tmp_path: Path) -> None:
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"PK\x03\x04 not really")
    _fail(tmp_path, p, [], "unsupported input format")


def test_out_equal_to_input_refused(tmp_path: Path, pbmc_copy: Path) -> None:
    before = {p.name for p in tmp_path.iterdir()}
    digest = sha256(pbmc_copy)
    res = run_cli("fit", pbmc_copy, "--out", pbmc_copy, "--quiet")
    _assert_clean_failure(res, tmp_path, before, {pbmc_copy: digest}, "never overwrites")


def test_embed_with_no_shared_genes(tmp_path: Path, tiny_model: Path) -> None:
    a = ad.AnnData(np.ones((30, 6), dtype=np.float32))
    a.var_names = [f"other{i}" for i in range(6)]
    p = tmp_path / "other.h5ad"
    a.write_h5ad(p)
    before = {q.name for q in tmp_path.iterdir()}
    res = run_cli("embed", tiny_model, p, "--out", tmp_path / "e.h5ad", "--quiet")
    _assert_clean_failure(res, tmp_path, before, {p: sha256(p)}, "shares no feature names")


def test_embed_missing_model_dir(tmp_path: Path, pbmc_copy: Path) -> None:
    before = {q.name for q in tmp_path.iterdir()}
    res = run_cli("embed", tmp_path / "nomodel", pbmc_copy, "--out", tmp_path / "e.h5ad")
    _assert_clean_failure(res, tmp_path, before, {pbmc_copy: sha256(pbmc_copy)},
                          "not a geovae model directory")


def test_unknown_option_is_usage_error(pbmc_copy: Path) -> None:
    res = run_cli("fit", pbmc_copy, "--no-such-option", "1")
    assert res.exit_code == 2
    assert "No such option" in res.output


def test_unknown_choice_values(tmp_path: Path, pbmc_copy: Path) -> None:
    _fail(tmp_path, pbmc_copy, ["--likelihood", "poisson"], "unknown --likelihood 'poisson'")
    _fail(tmp_path, pbmc_copy, ["--latent", "torus"], "unknown --latent 'torus'")


def test_cluster_without_embedding(tmp_path: Path, pbmc_copy: Path) -> None:
    before = {q.name for q in tmp_path.iterdir()}
    res = run_cli("cluster", pbmc_copy, "--out", tmp_path / "c.h5ad")
    _assert_clean_failure(res, tmp_path, before, {pbmc_copy: sha256(pbmc_copy)},
                          "run `geovae fit` first")


def test_crash_leaves_no_partial_output(tmp_path: Path, pbmc_copy: Path, monkeypatch) -> None:
    """An internal error during writing leaves neither the output nor a temporary file."""
    import geovae.io

    def boom(self, path, *a, **k):  # noqa: ANN001
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", boom)
    before = {q.name for q in tmp_path.iterdir()}
    res = run_cli("fit", pbmc_copy, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--quiet")
    assert res.exit_code == 1
    assert "internal error" in res.stderr and "Traceback" not in res.output
    left = {q.name for q in tmp_path.iterdir()} - before
    # outputs are staged and committed together: no model, plot, h5ad or temporary remains
    assert not left, left
    assert geovae.io is not None


# ---------------------------------------------------------------- issue 25: named before work
@pytest.mark.parametrize(("args", "mention"), [
    (["--model", "cgmvae", "--n-clusters", "0"], "--n-clusters must be a whole number between 1"),
    (["--model", "cgmvae", "--n-clusters", "1000000000"], "between 1 and 1000"),
    (["--seed", "-1"], "--seed must be a whole number between 0 and 2147483647"),
    (["--seed", "99999999999999999999999"], "--seed must be a whole number between 0"),
    (["--lr", "inf"], "--lr must be a positive finite number"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--latent-dim", "1000000000"], "--latent-dim must be a whole number between 1 and 1024"),
    (["--flow", "100000"], "--flow must be a whole number between 0 and 64"),
    (["--heldout-samples", "-1"], "--heldout-samples must be a whole number >= 0"),
    (["--model", "cgmvae", "--label-key", "cell_type", "--batch-key", "cell_type"],
     "--batch-key 'cell_type' is also the label column"),
])
def test_options_named_before_the_input_is_read(tmp_path: Path, args: list[str],
                                                mention: str) -> None:
    """An unreadable input: the option's error (not the input's) proves the check came
    first."""
    broken = tmp_path / "broken.h5ad"
    broken.write_text("not hdf5")
    _fail(tmp_path, broken, args, mention)


def _table(path: Path, **extra: object) -> Path:
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.poisson(3.0, (30, 6)), columns=[f"g{j}" for j in range(6)],
                      index=[f"c{i}" for i in range(30)])
    for name, values in extra.items():
        df[name] = values
    df.to_csv(path)
    return path


def test_reserved_column_name_is_named(tmp_path: Path) -> None:
    data = _table(tmp_path / "x.csv", _index=["a", "b"] * 15)
    _fail(tmp_path, data, [], "column '_index' in")
    _fail(tmp_path, data, ["--obs-columns", "_index"], "is a name AnnData reserves")


def test_duplicate_feature_names_one_line(tmp_path: Path) -> None:
    a = ad.AnnData(np.random.default_rng(0).poisson(3.0, (30, 6)).astype(np.float32))
    a.var_names = ["g0", "g0", "g2", "g3", "g4", "g5"]
    a.obs_names = [f"c{i}" for i in range(30)]
    a.write_h5ad(tmp_path / "dup.h5ad")
    _fail(tmp_path, tmp_path / "dup.h5ad", [], "feature names are not unique (e.g. 'g0')")


@pytest.mark.parametrize(("args", "mention"), [
    (["fit", "x.h5ad", "--bogus"], "No such option: --bogus"),
    (["fit", "x.h5ad", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["fitt", "x.h5ad"], "No such command 'fitt'"),
    (["fit"], "Missing argument 'INPUT'"),
])
def test_usage_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   args: list[str], mention: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = run_cli(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and mention in err[0] and "--help" in err[0], err
    assert res.stdout == "" and list(tmp_path.iterdir()) == []


def test_no_arguments_still_show_the_help() -> None:
    res = run_cli()
    assert res.exit_code == 2 and "Usage" in res.output and "fit" in res.output


@pytest.mark.parametrize("args", [
    ["cluster", "in.h5ad", "--out", "o.h5ad", "--seed", "-1"],
    ["transfer", "model", "in.h5ad", "--out", "o.h5ad", "--seed", "99999999999999999999999"],
    ["simulate", "o.h5ad", "--seed", "-5"],
])
def test_every_commands_seed_is_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the inputs need not exist: the seed is checked first
    res = run_cli(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "--seed must be a whole number between 0 and" in err[0], err
    assert list(tmp_path.iterdir()) == []
