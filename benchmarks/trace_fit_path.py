"""Which geovae modules ``geovae fit`` and ``geovae transfer`` enter from the CLI to the first
loss evaluation of the training loop, in order; how often they go back to a module already
left; and the call stack at that loss (the chain of geovae modules from the command down to
the module's ``loss``), checked to descend the layers in order, each layer once.

    python benchmarks/trace_fit_path.py                      # the installed geovae
    python benchmarks/trace_fit_path.py --functions          # also each entry's function
    python benchmarks/trace_fit_path.py --whole              # fit --model cgmvae to the end:
                                                             # upward calls only
    PYTHONPATH=/path/to/old/src python benchmarks/trace_fit_path.py   # another checkout

`trace` and `stack_problems` are what tests/test_call_path.py checks.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "pbmc68k_counts.h5ad"
#: cells of two conditions: a reference on the first, a query of the second
KANG = (ROOT / "data" / "kang_counts.h5ad", "stim")
#: layer rank of each top-level name (tests/test_architecture.py's layers; old flat names of
#: earlier checkouts too), bottom = 0
RANKS = {"errors": 0, "_keys": 0, "_threads": 0, "_rng": 0, "geometry": 1, "manifolds": 1,
         "volume": 1, "distributions": 2, "nn": 3, "flows": 3, "latents": 3, "likelihoods": 3,
         "data": 4, "modules": 5, "module": 5, "mixture": 5, "training": 6, "train": 6,
         "io": 6, "report": 6, "neighbors": 6, "models": 7, "model": 7, "datasets": 7,
         "tools": 8, "api": 8, "runs": 9, "cli": 10}


def rank(module: str) -> int:
    return RANKS.get(module.removeprefix("geovae.").split(".")[0], -1)


def layer(module: str) -> str:
    return module.removeprefix("geovae.").split(".")[0]


@dataclass
class Trace:
    """One command traced up to the first loss evaluation of its training loop."""

    #: module entries in order (a module called again right after itself is one entry)
    path: list[str] = field(default_factory=list)
    #: the same, as ``module:function``
    calls: list[str] = field(default_factory=list)
    #: (caller, callee) pairs where a lower layer called into a higher one
    upward: set[tuple[str, str]] = field(default_factory=set)
    #: ``module:function`` frames from the outermost geovae frame to the first ``loss``
    stack: list[str] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def returns(self) -> int:
        """How often the path enters a module it had already left."""
        seen: set[str] = set()
        back = 0
        for prev, cur in zip(self.path, self.path[1:], strict=False):
            back += cur in seen
            seen.add(prev)
        return back


def _training_loss(frame) -> list[str]:  # noqa: ANN001
    """The geovae frames (``module:function``, outermost first) when ``frame`` is a module's
    ``loss`` called inside the training loop (a `geovae.training` frame below it), else []."""
    if frame.f_code.co_name != "loss" or not frame.f_globals.get("__name__", "").startswith(
            ("geovae.modules", "geovae.module")):
        return []
    chain = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("geovae"):
            chain.append(f"{module}:{frame.f_code.co_name}")
        frame = frame.f_back
    return chain[::-1] if any(layer(f) in ("training", "train") for f in chain) else []


def trace(args: list[str], whole: bool = False) -> Trace:
    """Run ``geovae ARGS`` in this process and trace it up to the first loss evaluation of
    the training loop (``whole``: to the end, for upward calls)."""
    from typer.testing import CliRunner

    from geovae.cli import app

    found = Trace()
    done = False

    def profile(frame, event, arg):  # noqa: ANN001
        nonlocal done
        if done or event != "call" or frame.f_code.co_name == "<module>":
            return
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("geovae") or name == "geovae.distributions._common":
            return
        if not found.path or found.path[-1] != name:
            found.path.append(name)
            found.calls.append(f"{name}:{frame.f_code.co_name}")
        back = frame.f_back
        caller = back.f_globals.get("__name__", "") if back else ""
        # a lambda/closure handed down, or a decorator's wrapper calling what it wraps: not
        # a call up
        nested = (frame.f_code.co_flags | (back.f_code.co_flags if back else 0)) & 0x10
        if caller.startswith("geovae") and 0 <= rank(caller) < rank(name) and not nested:
            found.upward.add((caller.removeprefix("geovae."), name.removeprefix("geovae.")))
        if not found.stack:
            found.stack = _training_loss(frame)
            done = bool(found.stack) and not whole

    sys.setprofile(profile)
    try:
        found.exit_code = CliRunner().invoke(app, args).exit_code
    finally:
        sys.setprofile(None)
    return found


def stack_layers(stack: list[str]) -> list[str]:
    """The layers a stack passes through, top first, a layer once per visit. Layer-0 helpers
    every layer may use (``geovae._threads``' decorator, `geovae.errors`) are left out."""
    layers: list[str] = []
    for frame in stack:
        module = frame.split(":")[0]
        if rank(module) == 0:
            continue
        if not layers or layers[-1] != layer(module):
            layers.append(layer(module))
    return layers


def stack_problems(stack: list[str]) -> list[str]:
    """What is wrong with a stack: empty, not ending in a module's loss, a layer visited
    twice, or a step up (each step must go to a lower layer)."""
    if not stack:
        return ["no loss was evaluated"]
    layers = stack_layers(stack)
    problems = []
    if layers[0] != "cli" or layers[-1] not in ("modules", "module"):
        problems.append(f"runs from {layers[0]} to {layers[-1]}, not from cli to modules")
    for above, below in zip(layers, layers[1:], strict=False):
        if rank(below) >= rank(above):
            problems.append(f"{above} -> {below} does not descend")
    twice = sorted({x for x in layers if layers.count(x) > 1})
    if twice:
        problems.append(f"layers entered twice: {', '.join(twice)}")
    return problems


def traced_commands(tmp: str, data: Path = DATA, conditions: tuple[Path, str] = KANG,
                    whole: bool = False, fast: bool = False) -> dict[str, Trace]:
    """``fit`` on ``data``; and ``transfer`` of one condition's cells onto a reference fitted
    (untraced) on another's, ``conditions`` = (file, obs column): the first category is the
    reference, the others the query (new categories, so the query mapping trains). ``fast``:
    no UMAP and no held-out estimate after training (the path up to the loss is the same
    but for the plot's name)."""
    after = ["--no-umap", "--heldout-samples", "0"]
    import anndata as ad
    from typer.testing import CliRunner

    from geovae.cli import app

    fit = ["fit", str(data), "--out", f"{tmp}/fit.h5ad", "--epochs", "1", "--quiet",
           "--seed", "0", *(["--model", "cgmvae"] if whole else []), *(after if fast else [])]
    traces = {"fit": trace(fit, whole)}
    if whole:
        return traces
    path, key = conditions
    cells = ad.read_h5ad(path)
    first = cells.obs[key] == sorted(cells.obs[key].unique())[0]
    cells[first].copy().write_h5ad(f"{tmp}/ref.h5ad")
    cells[~first].copy().write_h5ad(f"{tmp}/query.h5ad")
    ref = CliRunner().invoke(app, ["fit", f"{tmp}/ref.h5ad", "--batch-key", key, "--epochs",
                                   "1", "--quiet", *after])
    assert ref.exit_code == 0, f"the reference fit failed: {ref.output}"
    traces["transfer"] = trace(["transfer", f"{tmp}/ref.geovae.model", f"{tmp}/query.h5ad",
                                "--out", f"{tmp}/mapped.h5ad", "--epochs", "1", "--quiet",
                                *after[:1 if fast else 0]])
    return traces


def main() -> None:
    import importlib
    import pkgutil

    import geovae

    for info in pkgutil.walk_packages(geovae.__path__, "geovae."):  # imports are not the path
        importlib.import_module(info.name)
    whole = "--whole" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        traces = traced_commands(tmp, whole=whole)
    for command, found in traces.items():
        print(f"## geovae {command} (exit code {found.exit_code})")
        entries = found.calls if "--functions" in sys.argv else found.path
        print(" -> ".join(p.removeprefix("geovae.") for p in entries))
        print(f"{len(found.path)} module entries, {len(set(found.path))} distinct modules, "
              f"{found.returns} returns to a module already left")
        layers = [layer(p) for p in found.path]
        layers = [x for i, x in enumerate(layers) if i == 0 or layers[i - 1] != x]
        print(f"layers ({len(layers)} entries): " + " -> ".join(layers))
        print(f"calls from a lower layer up into a higher one: {sorted(found.upward) or 'none'}")
        print("stack at the first training loss: "
              + " -> ".join(f.removeprefix("geovae.") for f in found.stack))
        problems = stack_problems(found.stack)
        print(f"stack layers: {' -> '.join(stack_layers(found.stack))}: "
              + ("; ".join(problems) if problems else "descending, each layer once"))
        print()


if __name__ == "__main__":
    main()
