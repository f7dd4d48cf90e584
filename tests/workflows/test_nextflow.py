"""The Nextflow modules (workflows/nextflow) without Nextflow: nf-core conventions checked
statically, stub blocks run with bash, and every module's real script block rendered from
conf/modules.config's ext.args (test profile) and run with bash, chained as main.nf chains
them, on the bundled Kang data."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anndata as ad
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NF = ROOT / "workflows" / "nextflow"
KANG = ROOT / "data" / "kang_counts.h5ad"
GEOVAE = ["fit", "transfer", "cluster", "report"]
MODULES = {f"GEOVAE_{m.upper()}": NF / "modules" / "geovae" / m / "main.nf" for m in GEOVAE}
MODULES["SPLIT_H5AD"] = NF / "modules" / "local" / "split" / "main.nf"

_spec = importlib.util.spec_from_file_location("nextflow_script",
                                               Path(__file__).with_name("nextflow_script.py"))
nfs = sys.modules.setdefault("nextflow_script", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(nfs)


def _env() -> dict[str, str]:
    """bash environment: this interpreter's bin and the pipeline's bin/ on PATH (as Nextflow
    puts bin/ there), this checkout's src first, one thread; NUMBA_DISABLE_JIT as in
    test_snakemake (no UMAP here, and compiling umap/pynndescent costs ~30 s a process)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(NF / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_DISABLE_JIT="1",
               MPLBACKEND="Agg")
    return env


def _params(profile: str | None = "test") -> dict[str, Any]:
    config = (NF / "nextflow.config").read_text()
    params = nfs.read_params(config)
    if profile:
        params.update(nfs.read_profile_params(config, profile))
    return params


def _ext_args(process: str, params: dict[str, Any]) -> str | None:
    closures = nfs.read_ext_args((NF / "conf" / "modules.config").read_text())
    return nfs.evaluate(closures[process], {"params": params}) if process in closures else None


def _task(process: str, params: dict[str, Any], cpus: int = 1, gpu: bool = False) -> dict:
    return {"cpus": cpus, "process": process, "accelerator": {"request": 1} if gpu else None,
            "ext": {"args": _ext_args(process, params), "prefix": None, "when": None}}


def run_module(process: str, workdir: Path, inputs: dict[str, Any], meta: dict,
               params: dict[str, Any], block: str = "script", **task: Any
               ) -> dict[str, list[Path]]:
    """Stage the inputs (symlinks, as Nextflow does), render the block, run it with bash
    (`bash -ue`, Nextflow's shell), check every non-optional declared output exists and
    versions.yml names this process; return emit -> existing output paths."""
    proc = nfs.read_process(MODULES[process])
    workdir.mkdir(parents=True)
    env: dict[str, Any] = {"meta": meta, "task": _task(process, params, **task),
                           "moduleDir": str(MODULES[process].parent)}
    for name in proc.inputs:
        if name.startswith("meta"):
            env[name] = meta
            continue
        value = inputs.get(name, "")
        if isinstance(value, Path):
            (workdir / value.name).symlink_to(value)
            value = value.name
        env[name] = value
    script, env = proc.render(block, env)
    (workdir / ".command.sh").write_text(script)
    res = subprocess.run(["bash", "-ue", ".command.sh"], cwd=workdir, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{process} {block} failed:\n{script}\n{res.stderr[-4000:]}"
    found: dict[str, list[Path]] = {}
    for emit, (names, optional) in proc.output_paths(env).items():
        paths = [workdir / n for n in names]
        missing = [p.name for p in paths if not p.exists()]
        assert optional or not missing, f"{process}: declared output(s) {missing} not written"
        found[emit] = [p for p in paths if p.exists()]
    versions = yaml.safe_load((workdir / "versions.yml").read_text())
    assert list(versions) == [process] and all(versions[process].values()), versions
    for emit, commands in proc.eval_commands(env).items():  # the versions topic
        for command in commands:
            out = subprocess.run(["bash", "-ue", "-c", command], cwd=workdir, env=_env(),
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and out.stdout.strip(), (emit, command, out.stderr)
            assert out.stdout.strip() in versions[process].values(), (emit, out.stdout)
    (workdir / ".command.err").write_text(res.stderr)
    return found


@pytest.mark.parametrize("process", sorted(MODULES))
def test_module_conventions(process: str) -> None:
    """nf-core module conventions: tag, conda env file, when:, ext.args, ext.prefix,
    task.cpus, versions.yml emitted, meta tuples, stub block, meta.yml matching main.nf."""
    proc = nfs.read_process(MODULES[process])
    text = proc.text
    assert proc.name == process and 'tag "$meta.id"' in text
    assert re.search(r"label 'process_(single|low|medium|high)'", text)
    assert 'conda "${moduleDir}/' in text
    env_file = re.search(r'conda "\$\{moduleDir\}/([^"]+)"', text).group(1)
    assert (MODULES[process].parent / env_file).is_file()
    assert "task.ext.when == null || task.ext.when" in text
    assert "def args = task.ext.args ?: ''" in proc.script and "${args}" in proc.script
    assert "task.ext.prefix" in proc.script and "task.ext.prefix" in proc.stub
    assert "${task.cpus}" in proc.script, "task.cpus must reach the command"
    assert '"${task.process}":' in proc.script and "versions.yml" in proc.stub
    assert proc.inputs[0] == "meta"
    emits = {o.emit: o for o in proc.outputs}
    assert emits["versions"].patterns == ['"versions.yml"']
    topics = [o for o in proc.outputs if o.topic == "versions"]
    assert len(topics) == 1 and topics[0].evals, "versions also as a topic (nf-core tools 4)"
    for o in proc.outputs:
        if o.emit != "versions" and not o.topic:
            line = next(ln for ln in text.splitlines() if f"emit: {o.emit}" in ln)
            assert "tuple val(meta)" in line, f"{o.emit}: outputs carry meta"
    if process.startswith("GEOVAE_"):
        meta = yaml.safe_load((MODULES[process].parent / "meta.yml").read_text())
        assert meta["name"] == process.lower()
        assert set(meta["output"]) == set(emits)
        declared = [next(iter(e)) for group in meta["input"] for e in group] \
            if isinstance(meta["input"][0], list) else []
        assert declared == proc.inputs
        env = yaml.safe_load((MODULES[process].parent / "environment.yml").read_text())
        assert any(isinstance(d, dict) and "pip" in d for d in env["dependencies"])


def test_gpu_and_threads_reach_the_command() -> None:
    proc = nfs.read_process(MODULES["GEOVAE_FIT"])
    base = {"meta": {"id": "x"}, "h5ad": "x.h5ad"}
    cpu, _ = proc.render("script", {**base, "task": _task("GEOVAE_FIT", _params(), cpus=3)})
    gpu, _ = proc.render("script", {**base, "task": _task("GEOVAE_FIT", _params(), gpu=True)})
    assert "--threads 3" in cpu and "--device cpu" in cpu and "--device cuda" in gpu
    assert "--epochs 2" in cpu and "--no-umap" in cpu and "--seed 0" in cpu
    full, _ = proc.render("script", {**base, "task": _task("GEOVAE_FIT", _params(None))})
    assert "--epochs" not in full and "--no-umap" not in full
    assert "--batch-key stim --label-key seurat_annotations" in full


def test_main_nf_includes() -> None:
    """main.nf includes existing modules under the names they define, and uses each."""
    text = (NF / "main.nf").read_text()
    includes = re.findall(r"include \{ (\w+)\s*\} from '([^']+)'", text)
    assert {name for name, _ in includes} == set(MODULES)
    for name, rel in includes:
        assert nfs.read_process(NF / f"{rel.removeprefix('./')}.nf").name == name
        assert re.search(rf"^\s*{name} \(", text, re.M), f"{name} is not called"
    assert set(_params()) >= {"input", "seed", "max_cells", "epochs", "umap", "report"}
    assert os.access(NF / "bin" / "split_h5ad.py", os.X_OK)


def test_stubs(tmp_path: Path) -> None:
    """Each stub block runs and creates every non-optional output it declares."""
    meta = {"id": "kang"}
    for process in sorted(MODULES):
        inputs = {"h5ad": KANG, "query": KANG, "model": KANG.parent, "reference": ""}
        run_module(process, tmp_path / process, inputs, meta, _params(), block="stub")


@pytest.mark.slow
def test_scripts_chain(tmp_path: Path) -> None:
    """The real script blocks, chained as main.nf chains them (test profile: 200 cells a
    side, 2 epochs, no UMAP), produce what they declare and the keys geovae promises."""
    params, meta = _params(), {"id": "kang"}
    assert params["max_cells"] == 200 and params["epochs"] == 2 and params["umap"] is False
    split = run_module("SPLIT_H5AD", tmp_path / "split", {"h5ad": KANG}, meta, params)
    fit = run_module("GEOVAE_FIT", tmp_path / "fit", {"h5ad": split["reference"][0]}, meta,
                     params, cpus=2)
    ref = ad.read_h5ad(fit["h5ad"][0])
    assert ref.n_obs == 200 and "X_geovae" in ref.obsm and ref.uns["geovae"]["seed"] == 0
    assert "--threads 2" in ref.uns["geovae"]["command"]
    transfer = run_module("GEOVAE_TRANSFER", tmp_path / "transfer",
                          {"query": split["query"][0], "model": fit["model"][0],
                           "reference": fit["h5ad"][0]}, meta, params)
    assert transfer["joint"], "with a reference, transfer writes the joint object"
    query = ad.read_h5ad(transfer["h5ad"][0])
    assert set(query.obs["stim"]) == {"STIM"} and "geovae_label" in query.obs
    cluster = run_module("GEOVAE_CLUSTER", tmp_path / "cluster",
                         {"h5ad": transfer["h5ad"][0]}, meta, params)
    assert "geovae_cluster" in ad.read_h5ad(cluster["h5ad"][0]).obs
    metrics = yaml.safe_load(cluster["metrics"][0].read_text())  # JSON is YAML
    assert metrics["verb"] == "cluster" and metrics["labels"]["label_key"]
    report = run_module("GEOVAE_REPORT", tmp_path / "report",
                        {"h5ad": cluster["h5ad"][0], "reference": transfer["joint"][0]},
                        meta, params)
    html = report["html"][0].read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<img" in html
