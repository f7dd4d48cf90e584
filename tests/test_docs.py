"""The README and docs/ pages: relative links reach existing files and headings, every
``geovae ...`` command line in a fenced block parses against the real CLI (without running),
and every Python snippet compiles."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "benchmarks" / "RESULTS.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _blocks(page: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang in languages]


def _command_lines(page: Path) -> list[list[str]]:
    """The argument lists after ``geovae`` (also ``-m geovae``) in the page's shell blocks."""
    found = []
    for body in _blocks(page, ("bash", "sh", "console", "")):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if "$" in line or "<<" in line:
                continue
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part, comments=True)
                if "geovae" in words and (words[0] == "geovae" or "-m" in words):
                    args = words[words.index("geovae") + 1:]
                    for i, word in enumerate(args):  # a redirection ends the arguments
                        if re.fullmatch(r"\d?>>?.*", word):
                            args = args[:i]
                            break
                    found.append(args)
    return found


def _commands() -> dict:
    """The CLI's commands by name (typer's click objects, nothing is run)."""
    from geovae.cli import app
    return typer.main.get_command(app).commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for m in LINK.finditer(FENCE.sub("", page.read_text())):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to missing {target}"
        if anchor:
            assert dest.suffix == ".md", f"{page.name}: anchor into a non-Markdown file {target}"
            assert anchor in _anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_command_lines_parse(page: Path) -> None:
    commands = _commands()
    for args in _command_lines(page):
        name, rest = args[0], args[1:]
        assert name in commands, f"{page.name}: no command 'geovae {name}'"
        try:
            commands[name].make_context(name, list(rest))
        except Exception as error:  # a usage error, or a bad choice (one line, typer.Exit(2))
            format_message = getattr(error, "format_message", None)
            message = format_message() if format_message else repr(error)
            pytest.fail(f"{page.name}: geovae {shlex.join(args)}: {message}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_snippets_compile(page: Path) -> None:
    """Each snippet compiles, and the geovae names it uses exist (without running it)."""
    import ast
    import importlib

    import geovae

    for i, body in enumerate(_blocks(page, ("python", "py"))):
        tree = ast.parse(compile(body, f"{page.name}[python {i}]", "exec",
                                 flags=ast.PyCF_ONLY_AST))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("geovae"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{page.name}: {node.module}.{alias.name}"
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in ("geovae", "gv")):
                assert hasattr(geovae, node.attr), f"{page.name}: geovae.{node.attr}"


def test_the_pages_have_commands_and_links() -> None:
    """The checks above see something: the README's first command and its docs links."""
    readme = _command_lines(ROOT / "README.md")
    assert ["fit", "data/pbmc68k_counts.h5ad", "--label-key", "bulk_labels"] in readme
    links = [m.group(1) for m in LINK.finditer((ROOT / "README.md").read_text()) if m.group(1)]
    assert sum(link.startswith("docs/") for link in links) >= 8


def test_readme_is_one_screen_and_results_current() -> None:
    """README about 150 lines (the rest lives in docs/); RESULTS.md at most 400 (current
    results only, superseded runs removed)."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert len(results.splitlines()) <= 400, \
        "RESULTS.md holds current results only: drop superseded runs (records stay in results/)"
    assert "reverted)" not in results and "before 2026-" not in results
