"""Which geovae modules a ``geovae fit`` call enters from the CLI to the first loss evaluation,
in order, and how often it goes back to a module it already left.

    python benchmarks/trace_fit_path.py                      # the installed geovae
    PYTHONPATH=/path/to/old/src python benchmarks/trace_fit_path.py   # another checkout
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: layer rank of each module (old flat names and new folders), bottom = 0
RANKS = {"geometry": 0, "manifolds": 0, "volume": 0, "distributions": 1, "nn": 2, "flows": 2,
         "latents": 2, "likelihoods": 2, "data": 3, "modules": 4, "module": 4, "mixture": 4,
         "training": 5, "train": 5, "models": 6, "model": 6, "io": 6, "report": 6,
         "neighbors": 6, "tools": 7, "api": 7, "runs": 8, "cli": 9}


def rank(module: str) -> int:
    return RANKS.get(module.removeprefix("geovae.").split(".")[0], -1)


def main() -> None:
    """``--whole``: trace the whole run of ``fit --model cgmvae`` (upward calls only)."""
    import importlib
    import pkgutil

    from typer.testing import CliRunner

    import geovae
    from geovae.cli import app

    for info in pkgutil.walk_packages(geovae.__path__, "geovae."):  # imports are not the path
        importlib.import_module(info.name)

    whole = "--whole" in sys.argv
    extra = ["--model", "cgmvae"] if whole else []
    path: list[str] = []
    upward: set[tuple[str, str]] = set()
    done = False

    def profile(frame, event, arg):  # noqa: ANN001
        nonlocal done
        if done or event != "call" or frame.f_code.co_name == "<module>":
            return
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("geovae") or name == "geovae.distributions._common":
            return
        if not path or path[-1] != name:
            path.append(name)
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        callback = frame.f_code.co_flags & 0x10  # a lambda/closure handed down, not a call up
        if caller.startswith("geovae") and 0 <= rank(caller) < rank(name) and not callback:
            upward.add((caller.removeprefix("geovae."), name.removeprefix("geovae.")))
        if frame.f_code.co_name == "forward" and "module" in name and not whole:
            done = True

    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(profile)
        try:
            CliRunner().invoke(app, ["fit", str(ROOT / "data" / "pbmc68k_counts.h5ad"), "--out",
                                     f"{tmp}/o.h5ad", "--epochs", "1", "--quiet", *extra])
        finally:
            sys.setprofile(None)
    seen: set[str] = set()
    back = 0
    for prev, cur in zip(path, path[1:], strict=False):
        if cur in seen:
            back += 1
        seen.add(prev)
    print(" -> ".join(p.removeprefix("geovae.") for p in path))
    print(f"{len(path)} module entries, {len(set(path))} distinct modules, "
          f"{back} returns to a module already left")
    layers = [p.removeprefix("geovae.").split(".")[0] for p in path]
    layers = [x for i, x in enumerate(layers) if i == 0 or layers[i - 1] != x]
    print("layers: " + " -> ".join(layers))
    print(f"calls from a lower layer up into a higher one: {sorted(upward) or 'none'}")


if __name__ == "__main__":
    main()
