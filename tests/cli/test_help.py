"""--help lists the values of every closed option and shows flags as flags; a value outside
the choices is one line naming the choices, before any work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli

from geovae.cli._types import CHOICES


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one option per line in the help table


def _option_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^[│|]\s+(--[a-z-]+)(.*)$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


@pytest.mark.parametrize(("command", "choices"), [
    ("fit", {"--model": "<vae|cgmvae>", "--latent": "<euclidean|sphere|hyperbolic>",
             "--posterior": "<vmf|power-spherical>",
             "--likelihood": "<auto|nb|zinb|gaussian|bernoulli>",
             "--device": "<auto|cpu|cuda>", "--precision": "<auto|32|bf16>"}),
    ("transfer", {"--precision": "<auto|32|bf16>"}),
    ("transfer", {"--freeze": "<all|covariates|none>"}),
    ("cluster", {"--method": "<leiden|mixture>"}),
])
def test_help_lists_choices_and_shows_flags_as_flags(command: str,
                                                     choices: dict[str, str]) -> None:
    res = run_cli(command, "--help")
    assert res.exit_code == 0, res.output
    rows = _option_rows(res.output)
    for flag, shown in choices.items():
        assert shown in rows[flag], (flag, rows[flag])
    assert "<bool>" not in res.output and "<str>" not in res.output
    assert "list[" not in res.output
    for flag in ("--quiet", "--verbose", "--no-umap", "--debug", "--help"):
        assert flag in rows, flag
        assert "<" not in rows[flag], rows[flag]  # no value type
    for flag in ("--metrics-json", "--n-neighbors", "--no-umap"):
        assert flag in rows, flag
    assert "--no-volume" not in res.output


def test_every_closed_option_is_a_choice() -> None:
    assert set(CHOICES) == {"model", "latent", "posterior", "likelihood", "freeze", "method",
                            "precision", "encoder_input", "novelty", "merge_rule",
                            "mixture_start"}


@pytest.mark.parametrize(("args", "line"), [
    (["fit", "x.h5ad", "--latent", "torus"],
     "unknown --latent 'torus': choose euclidean, sphere, hyperbolic"),
    (["fit", "x.h5ad", "--model=gmm"], "unknown --model 'gmm': choose vae, cgmvae"),
    (["cluster", "x.h5ad", "--out", "o.h5ad", "--method", "kmeans"],
     "unknown --method 'kmeans': choose leiden, mixture"),
    (["transfer", "m", "q.h5ad", "--freeze", "some"],
     "unknown --freeze 'some': choose all, covariates, none"),
    (["transfer", "m", "q.h5ad", "--novelty", "nearest"],
     "unknown --novelty 'nearest': choose query, reference, query-overall"),
    (["fit", "x.h5ad", "--merge-rule", "ward"],
     "unknown --merge-rule 'ward': choose elbo, modes, demp, lobes, graph"),
    (["fit", "x.h5ad", "--mixture-start", "kmeans"],
     "unknown --mixture-start 'kmeans': choose leiden, gmm"),
])
def test_unknown_choice_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    args: list[str], line: str) -> None:
    monkeypatch.chdir(tmp_path)  # the inputs need not exist: choices are checked first
    res = run_cli(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("error: " + line), err
    assert list(tmp_path.iterdir()) == []


COMMANDS = ("fit", "embed", "transfer", "cluster", "report", "simulate", "blobs")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_cuts_nothing_and_groups_every_option(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.main import get_command

    from geovae.cli import app
    from geovae.cli._help import PANELS

    monkeypatch.setenv("COLUMNS", "80")
    res = run_cli(command, "--help")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in res.output, [line for line in lines if "…" in line]
    params = get_command(app).commands[command].params
    for param in params:
        for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if flag.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", res.output), flag
    titles = re.findall(r"╭─ ([A-Za-z ]+?) ─", res.output)
    assert "Options" not in titles, "add the new option to geovae.cli._help.PANELS"
    assert set(titles) - {"Arguments"} <= set(PANELS)
    assert titles.index("Messages and help") == len(titles) - 1


def test_fit_help_is_grouped_and_short() -> None:
    res = run_cli("fit", "--help")
    titles = re.findall(r"╭─ ([A-Za-z ]+?) ─", res.output)
    assert titles == ["Arguments", "Data", "Model", "Training", "Clusters and UMAP",
                      "Performance", "Outputs", "Messages and help"]
    model = res.output.split("╭─ Model")[1].split("╰")[0]
    for flag in ("--latent ", "--likelihood ", "--condition-prior", "--no-condition-prior"):
        assert flag in model, flag
