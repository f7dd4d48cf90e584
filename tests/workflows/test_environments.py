"""The pipelines' software, checked statically (no conda, Docker or Nextflow here): every
Nextflow module names a conda environment file and the geovae container image, takes and
emits meta tuples, emits versions.yml and has a stub (nf-core's module conventions); the
environment files and the Dockerfile install geovae the README's way; the Snakemake rules use
one conda environment with the same dependencies; the Nextflow profiles conda, docker,
singularity and apptainer are declared."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NF = ROOT / "workflows" / "nextflow"
SMK = ROOT / "workflows" / "snakemake"
MODULE_FILES = sorted((NF / "modules").glob("*/*/main.nf"))


def _readme_setup() -> list[str]:
    """The `pip install` commands of the README's set-up line (command 1), in order."""
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                if "pip install torch==" in ln and "geovae fit" in ln)
    return [c.strip() for c in line.split("&&") if c.strip().startswith("pip install")]


def _version() -> str:
    """geovae's release version (pyproject's, without a .devN suffix)."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                        re.M).group(1)
    return re.sub(r"\.dev\d+$", "", version)


IMAGE = f"geovae:{_version()}"


def _section(body: str, name: str) -> str:
    m = re.search(rf"^\s*{name}:\s*$(.*?)(?=^\s*(?:input|output|when|script|stub):\s*$|\Z)",
                  body, re.S | re.M)
    return m.group(1) if m else ""


def _env_file(module: Path) -> Path:
    m = re.search(r'^\s*conda "\$\{moduleDir\}/([^"]+)"\s*$', module.read_text(), re.M)
    assert m, f"{module}: no `conda \"${{moduleDir}}/...\"` line"
    return (module.parent / m.group(1)).resolve()


def test_every_module_is_checked() -> None:
    names = {p.parent.name for p in MODULE_FILES}
    assert {"fit", "transfer", "cluster", "report", "split"} <= names


@pytest.mark.parametrize("module", MODULE_FILES, ids=lambda p: p.parent.name)
def test_module_conventions(module: Path) -> None:
    """conda + container + label + meta tuple in and out + versions.yml + when + ext.args +
    stub, as nf-core modules have them."""
    text = module.read_text()
    procs = re.findall(r"^process (\w+) \{", text, re.M)
    assert len(procs) == 1, f"{module}: one process per module file"
    assert _env_file(module).is_file()
    containers = re.findall(r'^\s*container "([^"]+)"\s*$', text, re.M)
    assert containers == [IMAGE], f"{module}: container {containers}, want [{IMAGE!r}]"
    assert re.search(r"^\s*label 'process_(single|low|medium|high)'", text, re.M)
    inputs = [ln.strip() for ln in _section(text, "input").splitlines() if ln.strip()]
    assert inputs and re.match(r"tuple val\(meta\), path\(\w+\)", inputs[0]), inputs
    outputs = [ln.strip() for ln in _section(text, "output").splitlines() if ln.strip()]
    assert 'path "versions.yml"' in next(o for o in outputs if "emit: versions" in o)
    for o in outputs:
        if not ("emit: versions" in o or "topic: versions" in o):
            assert o.startswith("tuple val(meta), path("), f"{module}: {o} carries no meta"
    assert "task.ext.when == null || task.ext.when" in _section(text, "when")
    script, stub = _section(text, "script"), _section(text, "stub")
    assert "def args = task.ext.args ?: ''" in script and "${args}" in script
    for block in (script, stub):
        assert "cat <<-END_VERSIONS > versions.yml" in block and '"${task.process}":' in block
    if procs[0].startswith("GEOVAE_"):
        for block in (script, stub):
            assert "geovae: \\$(geovae --version" in block, "versions.yml names geovae's"


def _pip(env: dict) -> list[str]:
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _conda_deps(env: dict) -> list[str]:
    return [d for d in env["dependencies"] if isinstance(d, str)]


def test_module_environment_files() -> None:
    """YAML with channels and dependencies; torch pinned as the README pins it and installed
    before geovae, which comes from this repository (the path resolves to it)."""
    files = sorted({_env_file(m) for m in MODULE_FILES})
    assert len({f.read_text() for f in files}) == 1, "the modules' environment.yml agree"
    torch_pin = next(c.split()[-1] for c in _readme_setup() if "torch==" in c)
    assert torch_pin == "torch==2.13.0"
    for f in files:
        env = yaml.safe_load(f.read_text())
        assert env["channels"] and all(isinstance(c, str) for c in env["channels"])
        deps = _conda_deps(env)
        assert any(re.fullmatch(r"(conda-forge::)?python=3\.\d+", d) for d in deps), deps
        assert any(re.fullmatch(r"(conda-forge::)?pip(=.*)?", d) for d in deps), deps
        pip = _pip(env)
        assert pip[0] == torch_pin, "torch first, pinned as in the README"
        assert len(pip) == 2 and pip[1].startswith("-e "), "then geovae, editable"
        assert (f.parent / pip[1].removeprefix("-e ").strip()).resolve() == ROOT


def test_snakemake_rules_use_the_environment(tmp_path: Path) -> None:
    """Every rule (but `all`) names envs/geovae.yaml; it lists the modules' dependencies
    (geovae itself comes from the post-deploy script, from the repository the Snakefile
    exports as GEOVAE_SRC)."""
    text = (SMK / "Snakefile").read_text()
    rules = re.split(r"^rule (\w+):\n", text, flags=re.M)[1:]
    bodies = dict(zip(rules[::2], rules[1::2], strict=True))
    assert set(bodies) >= {"split", "fit", "transfer", "cluster", "report"}
    for name, body in bodies.items():
        if name != "all":
            assert re.search(r'^    conda:\n        "envs/geovae\.yaml"\n', body, re.M), name
    assert 'os.environ.setdefault("GEOVAE_SRC", REPO)' in text
    smk = yaml.safe_load((SMK / "envs" / "geovae.yaml").read_text())
    module = yaml.safe_load(_env_file(MODULE_FILES[0]).read_text())
    assert smk["channels"] == module["channels"]
    assert _conda_deps(smk) == _conda_deps(module) and _pip(smk) == _pip(module)[:1]
    # the post-deploy script: pip install -e "$GEOVAE_SRC" in the new environment
    script = SMK / "envs" / "geovae.post-deploy.sh"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pip").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "pip.args"}\n')
    (fake / "pip").chmod(0o755)
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "GEOVAE_SRC": str(ROOT)}
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert shlex.split((tmp_path / "pip.args").read_text()) == ["install", "-e", str(ROOT)]
    env.pop("GEOVAE_SRC")
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "GEOVAE_SRC" in res.stderr


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [(ln.split()[0].upper(), ln.split(None, 1)[1]) for ln in lines
            if ln and not ln.startswith("#")]


def test_dockerfile_installs_geovae_the_readme_way() -> None:
    """Checked statically (no Docker engine here): the Python the environment files pin, the
    checkout copied in, then exactly the README's pip commands in its order; ps for
    Nextflow; the build comment tags the image the modules name."""
    steps = _dockerfile()
    assert steps[0][0] == "FROM"
    python = next(d for d in _conda_deps(yaml.safe_load(_env_file(MODULE_FILES[0]).read_text()))
                  if "python=" in d).split("=")[-1]
    assert re.fullmatch(rf"python:{re.escape(python)}(-slim)?", steps[0][1]), steps[0]
    runs = [(i, cmd.strip()) for i, (op, args) in enumerate(steps) if op == "RUN"
            for cmd in args.split("&&")]
    pips = [(i, c) for i, c in runs if c.startswith("pip ")]
    assert [c for _, c in pips] == _readme_setup()
    copy = next(i for i, (op, args) in enumerate(steps) if op == "COPY" and args == ". .")
    assert copy < pips[0][0], "the checkout is copied before pip installs it"
    assert any("procps" in c for _, c in runs)
    assert f"docker build -t {IMAGE} ." in (ROOT / "Dockerfile").read_text()
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & {"src", "pyproject.toml", "README.md", "workflows", "*"}


def test_nextflow_profiles() -> None:
    """conda, docker, singularity and apptainer profiles switch their engine on; the
    Singularity ones name the image file for every module's process."""
    config = (NF / "nextflow.config").read_text()
    processes = [re.search(r"^process (\w+)", m.read_text(), re.M).group(1)
                 for m in MODULE_FILES]
    for engine in ("conda", "docker", "singularity", "apptainer"):
        m = re.search(rf"^    {engine} \{{\n(.*?)^    \}}", config, re.S | re.M)
        assert m, f"no {engine} profile"
        assert f"{engine}.enabled" in m.group(1) and re.search(
            rf"{engine}\.enabled\s*=\s*true", m.group(1))
        if engine in ("singularity", "apptainer"):
            sel = re.search(r"withName: '([^']+)' \{ container = params\.singularity_image",
                            m.group(1))
            assert sel and all(re.fullmatch(sel.group(1), p) for p in processes), engine
    assert f"geovae-{_version()}.sif" in config
