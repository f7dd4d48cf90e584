"""umap-learn and pynndescent imported through `geovae.graph.jit_cache` compile once: a second
process loads their numba functions from the on-disk cache instead of compiling them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from geovae.graph.jit_cache import cache_ready, import_umap
ready_before = cache_ready()
import_umap()
import numpy as np
import pynndescent.distances as d
from umap.umap_ import fuzzy_simplicial_set
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 4)).astype(np.float32)
knn_i = np.argsort(((X[:, None] - X[None]) ** 2).sum(-1), 1)[:, :6]
knn_d = np.sqrt(((X[:, None] - X[knn_i]) ** 2).sum(-1)).astype(np.float32)
fuzzy_simplicial_set(X, 6, 0, "euclidean", knn_indices=knn_i, knn_dists=knn_d)
import umap.umap_ as u
hits = {"pynndescent.squared_euclidean": sum(d.squared_euclidean.stats.cache_hits.values()),
        "umap.smooth_knn_dist": sum(u.smooth_knn_dist.stats.cache_hits.values()),
        "ready_before": ready_before, "ready_after": cache_ready()}
print(json.dumps(hits))
"""


COMPILING = "compiling umap-learn's and pynndescent's numba functions once"


def _run(cache_dir: str) -> tuple[dict, str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "NUMBA_NUM_THREADS": "1"}
    env.pop("GEOVAE_NUMBA_CACHE", None)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.slow
def test_second_process_loads_compiled_functions_from_the_cache(tmp_path):
    first, log = _run(str(tmp_path))
    assert first["pynndescent.squared_euclidean"] == 0  # compiled here
    assert first["umap.smooth_knn_dist"] == 0
    assert any(tmp_path.rglob("*.nbi")), "nothing was written to the numba cache"
    # the first run says why it is slow, before the silence
    assert not first["ready_before"] and first["ready_after"]
    assert COMPILING in log and "later runs reuse" in log
    second, log = _run(str(tmp_path))
    assert second["pynndescent.squared_euclidean"] > 0  # compiled at import by the first process
    assert second["umap.smooth_knn_dist"] > 0  # compiled on first use by the first process
    assert second["ready_before"] and COMPILING not in log


def test_already_imported_packages_are_left_alone(monkeypatch):
    import numba

    from geovae.graph import jit_cache

    monkeypatch.setitem(sys.modules, "umap", object())
    before = numba.njit
    jit_cache.import_umap()
    assert numba.njit is before


FALLBACK = r"""
import json, sys
import numba
from geovae.graph import jit_cache
before = numba.njit

def broken(func):
    raise RuntimeError("cannot cache function: no locator available")

jit_cache._cacheable = broken  # every decoration inside the patch fails
jit_cache.import_umap()
import umap.umap_ as u
print(json.dumps({"restored": numba.njit is before, "umap": "umap" in sys.modules,
                  "cached": type(u.smooth_knn_dist._cache).__name__}))
"""

PARTS = r"""
import json, os, sys
import numba
from geovae.graph.jit_cache import import_umap
before = numba.njit
import_umap()
if os.environ.get("GEOVAE_NUMBA_CACHE") == "0":
    print(json.dumps({"imported": "umap" in sys.modules}))
    raise SystemExit
import pynndescent.pynndescent_ as p
import umap.umap_ as u
name = lambda f: type(f._cache).__name__
print(json.dumps({"restored": numba.njit is before, "nn_descent": name(p.nn_descent),
                  "smooth_knn_dist": name(u.smooth_knn_dist)}))
"""


def _child(code: str, tmp_path, **env: str) -> dict:
    full = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1", **env}
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_failing_cached_import_falls_back_to_the_plain_one(tmp_path):
    r = _child(FALLBACK, tmp_path)
    assert r == {"restored": True, "umap": True, "cached": "NullCache"}


@pytest.mark.slow
def test_functions_taking_a_distance_are_left_uncached_and_the_switch_turns_it_off(tmp_path):
    r = _child(PARTS, tmp_path)
    # nn_descent takes the metric function: its cache key would change in every process
    assert r == {"restored": True, "nn_descent": "NullCache",
                 "smooth_knn_dist": "FunctionCache"}
    assert _child(PARTS, tmp_path, GEOVAE_NUMBA_CACHE="0") == {"imported": False}
