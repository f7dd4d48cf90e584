"""Flags stop at the CLI: lower layers name Python parameters, the CLI alone turns them into
its flags (one line, the flag the user typed), and builds `geovae.fit`'s nested options from
what the model and latent classes declare."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
from helpers import PBMC, run_cli

import geovae
from geovae.cli import app
from geovae.cli._flags import fit_options, flag_of, message
from geovae.errors import DivergedError, InputError, OptionError

SRC = Path(geovae.__file__).parent
#: layers below the CLI whose error messages must not name a command-line flag
LOWER = ("geometry", "distributions", "nn", "modules", "data", "io", "report", "models",
         "training", "tools", "runs")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _command(name: str):
    return typer.main.get_command(app).commands[name]


def test_no_flag_in_lower_layers_errors() -> None:
    """Every string in a ``raise`` below the CLI is free of ``--flags`` (torchrun's own
    ``--nproc-per-node`` is named as torchrun's)."""
    found = []
    for layer in LOWER:
        for path in sorted((SRC / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Raise) and node.exc is not None):
                    continue
                for sub in ast.walk(node.exc):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        flags = [f for f in FLAG.findall(sub.value)
                                 if f != "--nproc-per-node"]
                        found += [f"{path.relative_to(SRC)}:{node.lineno} {f}" for f in flags]
    assert not found, found


def test_runs_name_no_flag() -> None:
    """Nothing in `geovae.runs` (messages, notes, docstrings) spells a command-line flag: the
    file jobs name their Python parameters, the CLI renders them."""
    found = [f"{path.relative_to(SRC)}:{i} {flag}"
             for path in sorted((SRC / "runs").rglob("*.py"))
             for i, line in enumerate(path.read_text().splitlines(), 1)
             for flag in FLAG.findall(line)]
    assert not found, found


def test_notes_render_as_flags() -> None:
    """A note names parameters like an error: Python's spelling in the library, the running
    command's flags through the CLI (the log line and the run's notes alike)."""
    from geovae.errors import Note

    hint = Note("add {layer='counts'}; or {likelihood='gaussian'}; drop {umap=False}")
    assert hint == "add layer='counts'; or likelihood='gaussian'; drop umap=False"
    assert message(hint, _command("fit")) == \
        "add --layer counts; or --likelihood gaussian; drop --no-umap"
    assert message("plain {text}", _command("fit")) == "plain {text}"


def test_output_errors_name_the_command_flags(tmp_path: Path) -> None:
    """`geovae.runs.plan` names parameters; each command shows its own flag (transfer's
    ``new_model_dir`` is ``--model-dir``)."""
    from geovae.runs.plan import OutputPlan

    (tmp_path / "m").write_text("")
    plan = OutputPlan([], tmp_path / "o.h5ad", model_dir=tmp_path / "m",
                      model_dir_param="new_model_dir")
    with pytest.raises(OptionError) as err:
        plan.check()
    assert str(err.value).startswith("`new_model_dir` '")
    assert message(err.value, _command("transfer")) == (
        f"--model-dir '{tmp_path / 'm'}' exists and is not a folder: choose another "
        "--model-dir")


def test_python_and_cli_renderings() -> None:
    exc = OptionError("omit {opt} to use X, or {layer='raw'}; drop it with {backed=False} or "
                      "{backed=True}; entries {model_options.delete_moves} and "
                      "{latent_options.decoder_input}", param="layer")
    assert str(exc) == ("omit `layer` to use X, or layer='raw'; drop it with backed=False or "
                        "backed=True; entries `model_options.delete_moves` and "
                        "`latent_options.decoder_input`")
    assert message(exc, _command("fit")) == (
        "omit --layer to use X, or --layer raw; drop it with --no-backed or --backed; entries "
        "--delete-moves/--no-delete-moves and latent_options['decoder_input']")
    # a flag named differently from its parameter: transfer's --model-dir is new_model_dir
    assert flag_of("new_model_dir", command=_command("transfer")) == "--model-dir"
    assert flag_of("torch_compile", command=_command("fit")) == "--compile"
    assert message(DivergedError("try a lower learning rate ({lr})")) == \
        "try a lower learning rate (--lr)"
    assert str(DivergedError("try ({lr})")) == "try (`lr`)"
    assert str(InputError("a {b} c")) == "a `b` c"
    assert str(OptionError("{opt} bad")) == "{opt} bad"  # no parameter: left as written


def test_user_text_in_quotes_is_not_a_reference(tmp_path: Path) -> None:
    """A path or column the user wrote with braces (an unexpanded Snakemake wildcard) is shown
    as written, in the library's rendering and in the command line's."""
    exc = OptionError("{opt} 'data/{sample}.h5ad' and '{out}' but not {out}", param="layer")
    assert str(exc) == "`layer` 'data/{sample}.h5ad' and '{out}' but not `out`"
    assert message(exc, _command("fit")) == "--layer 'data/{sample}.h5ad' and '{out}' but not --out"
    res = run_cli("fit", tmp_path / "in_{out}.h5ad", "--quiet")
    assert res.exit_code == 2 and "'" + str(tmp_path / "in_{out}.h5ad") + "'" in res.stderr, \
        res.stderr


def test_fit_options_nest_what_models_declare() -> None:
    captured = {}

    def fake_run_fit(_input, **kwargs):
        captured.update(kwargs)
        raise typer.Exit(0)

    from geovae import runs

    real = runs.run_fit
    runs.run_fit = fake_run_fit
    try:
        res = run_cli("fit", PBMC, "--model", "cgmvae", "--mixture-weights", "per-cell",
                      "--n-clusters", "5", "--no-delete-moves", "--merge-rule", "modes",
                      "--latent", "sphere",
                      "--posterior", "power-spherical", "--batch-key", "phase", "--compile",
                      "--quiet", "--epochs", "2")
    finally:
        runs.run_fit = real
    assert res.exit_code == 0, res.output
    assert captured["model_options"] == {"mixture_weights": "per_cell", "n_clusters": 5,
                                         "delete_moves": False, "merge_rule": "modes"}
    assert captured["latent_options"] == {"posterior": "power-spherical"}
    assert captured["batch_key"] == ["phase"] and captured["torch_compile"] is True
    assert captured["progress"] is False and captured["epochs"] == 2
    assert "quiet" not in captured and "devices" not in captured


def test_fit_options_defaults_stay_out() -> None:
    """Flags at their defaults reach no model that does not take them (--posterior vmf on a
    Euclidean latent, --flow 0)."""

    class Ctx:
        command = _command("fit")
        params = {p.name: p.default for p in command.params}

    params = dict(Ctx.params)
    params.update(latent="euclidean", quiet=False)
    Ctx.params = params
    out = fit_options(Ctx)
    assert out["latent_options"] == {} and out["model_options"] == {}


@pytest.mark.parametrize(("args", "line"), [
    (["--likelihood", "bernoulli"], "--likelihood bernoulli needs values in [0, 1]"),
    (["--layer", "raw"], "omit --layer to use X"),
    (["--backed", "--layer", "raw"], "--layer raw is not supported with --backed"),
])
def test_cli_errors_name_flags(tmp_path: Path, args: list[str], line: str) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--quiet", *args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and line in lines[0], res.stderr


def test_every_fit_flag_has_a_home() -> None:
    """Each flag of ``geovae fit`` is a `geovae.fit` parameter, an entry a model or latent
    declares, a `run_fit` parameter or a command-line one: a new flag needs no table."""
    import inspect

    from geovae.cli._flags import CLI_FLAGS, PYTHON_NAMES, RUN_FLAGS, nested_in
    from geovae.runs import run_fit
    from geovae.tools.fit import fit

    fit_params = set(inspect.signature(fit).parameters)
    run_params = set(inspect.signature(run_fit).parameters) | {"input", "no_umap"}
    homeless = [p.name for p in _command("fit").params
                if p.name not in CLI_FLAGS and not (p.name in RUN_FLAGS and p.name in run_params)
                and nested_in(p.name) is None
                and PYTHON_NAMES.get(p.name, p.name) not in fit_params]
    assert not homeless, homeless
