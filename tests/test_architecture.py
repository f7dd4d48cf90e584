"""The package's layering: no module imports from a layer above its own, no import circle
between layers, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "geovae"
#: bottom (0) to top; a module may import from its own layer and those below
LAYERS = {"errors": 0, "_keys": 0, "_threads": 0, "_rng": 0, "geometry": 1, "distributions": 2,
          "nn": 3, "data": 4,
          "modules": 5, "training": 6, "io": 6, "report": 6, "models": 7, "datasets": 7,
          "tools": 8, "runs": 9, "cli": 10, "__main__": 11, "__init__": 11}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    """geovae modules imported anywhere in the file (also inside functions)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geovae"):
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            rel = path.relative_to(SRC.parent).with_suffix("").parts[:-node.level]
            found.append(".".join(rel) + ("." + node.module if node.module else ""))
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("geovae")]
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts)] = p
    return out


def test_no_import_from_a_higher_layer() -> None:
    bad = []
    for name, path in _modules().items():
        mine = LAYERS[_layer(name)]
        for imported in _imports(path):
            if imported == "geovae":
                continue
            if LAYERS[_layer(imported)] > mine:
                bad.append(f"{name} imports {imported}")
    assert not bad, "\n".join(bad)


def test_layers_form_no_circle() -> None:
    edges: dict[str, set[str]] = {}
    for name, path in _modules().items():
        for imported in _imports(path):
            a, b = _layer(name), _layer(imported)
            if imported != "geovae" and a != b:
                edges.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in edges.get(start, ()))

    circles = [a for a in edges if reaches(a, a, {a})]
    assert not circles, circles


def test_modules_are_small() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert all(v <= 400 for v in long.values()), {n: v for n, v in long.items() if v > 400}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a file importing from a higher layer is found."""
    p = SRC / "geometry" / "manifolds.py"
    fake = tmp_path / "geovae" / "geometry" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(p.read_text() + "\nfrom geovae.models import GeoVAE\n")
    assert "geovae.models" in _imports(fake)
    assert LAYERS[_layer("geovae.models")] > LAYERS[_layer("geovae.geometry.x")]
