"""The Snakemake pipeline (workflows/snakemake): its commands (dry run), its split script, and
one real run on the bundled Kang data followed by a second run that has nothing to do."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "snakemake"
SNAKEFILE = WORKFLOW / "Snakefile"
SPLIT = WORKFLOW / "scripts" / "split.py"
KANG = ROOT / "data" / "kang_counts.h5ad"

pytest.importorskip("snakemake", reason="the test extra installs snakemake")

#: a quick run: 200 cells per side, 2 epochs, no UMAP (see `_env` for why numba is off)
QUICK = ["epochs=2", "max_cells=200", "umap=false", "threads=1", "seed=3"]


def _env() -> dict[str, str]:
    """This interpreter's bin first on PATH (the `geovae` and `python` the rules call), this
    checkout's src first on PYTHONPATH, one thread. NUMBA_DISABLE_JIT: with umap=false numba
    only serves scanpy's neighbour weights on a few hundred cells, while compiling
    pynndescent/umap on import costs ~30 s CPU in every geovae process."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_DISABLE_JIT="1",
               MPLBACKEND="Agg")
    return env


def snakemake(workdir: Path, *args: str, config: list[str] = (), check: bool = True
              ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory",
           str(workdir), "--cores", "2", *args]
    if config:
        cmd += ["--config", *config]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res


def _shell_commands(output: str) -> dict[str, str]:
    """rule name -> its shell command, from `snakemake -n -p` output."""
    cmds: dict[str, str] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
        elif line.startswith("Shell command:") and rule:
            cmds[rule] = line.removeprefix("Shell command:").strip()
        elif rule and line.strip().startswith("geovae "):  # older snakemake: command alone
            cmds.setdefault(rule, line.strip())
    return cmds


def test_dry_run_commands(tmp_path: Path) -> None:
    """threads, seed, device, GPUs and metrics reach every geovae command."""
    res = snakemake(tmp_path, "-n", "-p", config=["seed=7", "gpus=1", "threads=4"])
    out = res.stdout + res.stderr
    cmds = _shell_commands(out)
    assert set(cmds) >= {"fit", "transfer", "cluster", "report"}, out[-3000:]
    for rule in ("fit", "transfer"):
        assert "--threads 2" in cmds[rule]  # 4 asked, scaled to --cores 2
        assert "--device cuda" in cmds[rule]
    for rule in ("fit", "transfer", "cluster"):
        c = cmds[rule]
        assert c.startswith(f"geovae {rule} ")
        assert "--seed 7" in c
        assert f"--metrics-json results/metrics/{rule}.json" in c
        assert f"results/logs/{rule}.log" in c
    assert cmds["report"].startswith("geovae report results/cluster/query.h5ad --reference "
                                      "results/transfer/query.joint.h5ad --out ")
    assert "gpu=1" in out
    assert not list(tmp_path.glob("results")), "a dry run writes nothing"
    # the defaults: CPU, UMAP plots declared as outputs; report: false drops the report
    res = snakemake(tmp_path, "-n", "-p", config=["report=false"])
    out = res.stdout + res.stderr
    cmds = _shell_commands(out)
    assert "report" not in cmds and "--device cpu" in cmds["fit"]
    assert "results/fit/reference.umap.png" in out
    assert "results/transfer/query.joint.png" in out


def _split_module():
    spec = importlib.util.spec_from_file_location("geovae_workflow_split", SPLIT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_split(*args: object) -> int:
    """The split script's command line, in-process (exit code)."""
    return _split_module().main([str(a) for a in args])


@pytest.fixture
def small_h5ad(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"stim": pd.Categorical(["CTRL", "STIM", "OTHER"] * 10)},
                       index=[f"c{i}" for i in range(30)])
    path = tmp_path / "in.h5ad"
    ad.AnnData(rng.poisson(1.0, (30, 4)).astype(np.float32), obs=obs).write_h5ad(path)
    return path


def test_split_script(tmp_path: Path, small_h5ad: Path, capsys) -> None:
    before = small_h5ad.read_bytes()
    ref, query = tmp_path / "out" / "ref.h5ad", tmp_path / "out" / "query.h5ad"
    assert _run_split(small_h5ad, ref, query, "--key", "stim", "--reference", "CTRL",
                      "--reference", "OTHER", "--query", "STIM") == 0, capsys.readouterr().err
    r, q = ad.read_h5ad(ref), ad.read_h5ad(query)
    assert sorted(set(r.obs.stim)) == ["CTRL", "OTHER"] and r.n_obs == 20
    assert set(q.obs.stim) == {"STIM"} and q.n_obs == 10
    # a seeded subset, in input order, the same twice
    sub = tmp_path / "sub.h5ad"
    args = ("--key", "stim", "--reference", "CTRL", "--query", "STIM", "--max-cells", "4",
            "--seed", "3")
    assert _run_split(small_h5ad, sub, query, *args) == 0, capsys.readouterr().err
    names = list(ad.read_h5ad(sub).obs_names)
    assert len(names) == 4 and names == sorted(names, key=lambda n: int(n[1:]))
    first = hashlib.sha256(sub.read_bytes()).hexdigest()
    assert _run_split(small_h5ad, sub, query, *args) == 0
    assert hashlib.sha256(sub.read_bytes()).hexdigest() == first
    assert small_h5ad.read_bytes() == before


@pytest.mark.parametrize("args, words", [
    (["--key", "nope", "--reference", "CTRL", "--query", "STIM"], "'nope' is not an obs column"),
    (["--key", "stim", "--reference", "ctrl", "--query", "STIM"], "no cell of"),
    (["--key", "stim", "--reference", "CTRL", "--query", "CTRL"], "in both"),
])
def test_split_script_bad_input(tmp_path: Path, small_h5ad: Path, args: list[str],
                                words: str, capsys) -> None:
    ref, query = tmp_path / "r.h5ad", tmp_path / "q.h5ad"
    assert _run_split(small_h5ad, ref, query, *args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not ref.exists() and not query.exists()


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime (ns) of every output file, .snakemake bookkeeping excluded."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and ".snakemake" not in p.parts}


@pytest.mark.slow
def test_pipeline_runs_once(tmp_path: Path) -> None:
    """split -> fit -> transfer -> cluster -> report for real; then nothing to do."""
    config = QUICK
    snakemake(tmp_path, config=config)
    res = tmp_path / "results"

    fit = ad.read_h5ad(res / "fit" / "reference.h5ad")
    assert fit.n_obs == 200 and set(fit.obs["stim"]) == {"CTRL"}
    assert {"X_geovae"} <= set(fit.obsm) and "geovae_cluster" in fit.obs
    assert fit.uns["geovae"]["seed"] == 3
    assert (res / "fit" / "reference.model" / "config.json").is_file()
    query = ad.read_h5ad(res / "transfer" / "query.h5ad")
    assert set(query.obs["stim"]) == {"STIM"}
    assert {"geovae_label", "geovae_label_confidence"} <= set(query.obs)
    assert {"X_geovae", "geovae_label_probs"} <= set(query.obsm)
    assert "transfer" in query.uns["geovae"]
    joint = ad.read_h5ad(res / "transfer" / "query.joint.h5ad")
    assert set(joint.obs["geovae_source"]) == {"reference", "query"} and joint.n_obs == 400
    clustered = ad.read_h5ad(res / "cluster" / "query.h5ad")
    assert "geovae_cluster" in clustered.obs and clustered.uns["geovae"]["cluster"]
    for verb in ("fit", "transfer", "cluster"):
        m = json.loads((res / "metrics" / f"{verb}.json").read_text())
        assert m["schema"] == "geovae-metrics/1" and m["verb"] == verb
        assert m["command"].startswith(f"geovae {verb} ") and "--seed 3" in m["command"]
        assert m["clusters"]["sizes"]
        assert m["labels"]["ari"] is not None
        assert (res / "logs" / f"{verb}.log").stat().st_size > 0
    assert m["labels"]["label_key"] == "seurat_annotations"
    assert json.loads((res / "metrics" / "transfer.json").read_text())["transfer"]["accuracy"] \
        is not None
    assert json.loads((res / "metrics" / "fit.json").read_text())["threads"] == 1
    html = (res / "report" / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<img" in html
    assert (res / "logs" / "report.log").is_file()

    # a second run: nothing to do, nothing touched
    before = _digests(tmp_path)
    again = snakemake(tmp_path, config=config)
    assert "Nothing to be done" in again.stdout + again.stderr
    dry = snakemake(tmp_path, "-n", config=config)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert _digests(tmp_path) == before

    # deterministic given the seed: the last geovae step, forced, writes the same bytes
    snakemake(tmp_path, "--forcerun", "cluster", config=config)
    after = _digests(tmp_path)
    h5ad = "results/cluster/query.h5ad"
    assert after[h5ad][1] != before[h5ad][1], "cluster did not run again"
    assert after[h5ad][0] == before[h5ad][0]
