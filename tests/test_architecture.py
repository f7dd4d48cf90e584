"""The package's layering: no module imports from a layer above its own, no import circle
between layers nor between modules (inside one folder too), no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "geovae"
#: bottom (0) to top; a module may import from its own layer and those below
LAYERS = {"errors": 0, "_keys": 0, "_threads": 0, "_rng": 0, "geometry": 1, "distributions": 2,
          "nn": 3, "data": 4, "graph": 4,
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


def _module_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the geovae modules it imports anywhere in the file (also inside functions):
    ``from geovae.a import b`` is an arrow to ``geovae.a.b`` where that is a module, else to
    the package ``geovae.a`` (its ``__init__``). The root package is left out: it loads its
    verbs lazily."""
    files = {}
    for p in src.rglob("*.py"):
        parts = p.relative_to(src.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        arrows = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.startswith(src.name):
                    arrows |= {f"{module}.{a.name}" if f"{module}.{a.name}" in files else module
                               for a in node.names}
            elif isinstance(node, ast.Import):
                arrows |= {a.name for a in node.names if a.name.startswith(src.name)}
        graph[name] = {a for a in arrows if a in files and a not in (name, src.name)}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_modules_form_no_import_circle() -> None:
    """No module reaches itself through imports, inside one folder or across folders (a
    circle makes the import order matter and the modules impossible to read one at a time)."""
    circles = _circles(_module_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_check_sees_an_import_circle(tmp_path: Path) -> None:
    """The checker itself: a circle through a function-level import and a package
    ``__init__`` is found, a chain is not."""
    pkg = tmp_path / "geovae"
    (pkg / "tools").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tools" / "__init__.py").write_text("from geovae.tools.fit import fit\n")
    (pkg / "tools" / "fit.py").write_text("def fit():\n    from .evaluate import check\n")
    (pkg / "tools" / "evaluate.py").write_text("from geovae.tools import fit\n")
    (pkg / "tools" / "plain.py").write_text("import geovae.tools.evaluate\n")
    graph = _module_graph(pkg)
    assert graph["geovae.tools.evaluate"] == {"geovae.tools.fit"}  # a module, not __init__
    assert _circles(graph) == [["geovae.tools.evaluate", "geovae.tools.fit"]]
    (pkg / "tools" / "evaluate.py").write_text("import numpy\n")
    assert _circles(_module_graph(pkg)) == []


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
