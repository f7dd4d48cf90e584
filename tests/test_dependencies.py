"""Every third-party package that `src/geovae` imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_level_names() -> dict[str, str]:
    """Top-level module name -> one file of src/geovae importing it (absolute imports)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "geovae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    """Normalised names of the distributions in [project] dependencies."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None, "no [project] dependencies in pyproject.toml"
    names = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)', block.group(1), re.M)
    return {_normal(name) for name in names}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_in_src_is_declared() -> None:
    to_distributions = packages_distributions()
    declared = _declared()
    missing = []
    for module, where in _imported_top_level_names().items():
        if module in sys.stdlib_module_names or module == "geovae":
            continue
        distributions = {_normal(d) for d in to_distributions.get(module, [module])}
        if not distributions & declared:
            missing.append(f"{module} ({where}; distribution {', '.join(sorted(distributions))})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def test_the_check_sees_the_imports() -> None:
    """The scan finds imports that need the distribution-name mapping (sklearn, umap)."""
    names = _imported_top_level_names()
    assert {"torch", "sklearn", "umap", "natsort", "numba"} <= set(names)
    assert {"scikit-learn", "umap-learn", "torch"} <= _declared()
