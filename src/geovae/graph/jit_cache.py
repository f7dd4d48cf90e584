"""Import umap-learn and pynndescent with numba's on-disk cache switched on.

Every `geovae fit` builds a kNN graph with UMAP connectivities and a UMAP, and so imports
umap-learn, which imports pynndescent. pynndescent < 0.7 (the versions scanpy 1.11 works with,
see pyproject.toml) compiles dozens of numba functions when it is imported and umap-learn
compiles its graph functions on first use, none of them cached: 15-20 CPU seconds in every
process, more than a whole training run on a small data set. `import_umap` imports both with
``cache=True`` added to the ``numba.njit``/``numba.jit`` decorators of their own functions, so
the first process compiles and saves the machine code (next to the package, in numba's
user-wide cache folder, or in ``NUMBA_CACHE_DIR``) and later processes load it. numba checks
each function's source file time stamp, so a new version of the file recompiles that
function.

Left uncached: functions that take another function as an argument (a distance or metric:
parameters named in `FUNCTION_PARAMETERS`): numba keys their cache by that function's
identity, which differs in every process, so caching them would only add a file per run.
Saving to the cache never fails a run: an ``OSError`` while writing (a full disk, a quota) is
ignored, as numba itself does on Windows. ``GEOVAE_NUMBA_CACHE=0`` turns all this off.

Compiling takes tens of seconds of silence, so `import_umap` first logs why when numba's cache
holds no compiled code of these packages yet (`cache_ready`), or caching is off.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("geovae.tools")

#: the packages whose numba functions are compiled with cache=True
PACKAGES = ("pynndescent", "umap")
#: parameters that receive a function in these packages: such functions are not cached
FUNCTION_PARAMETERS = frozenset({"dist", "metric", "ground_metric", "deheap_sort_function"})

_lock = threading.Lock()


def _cacheable(func: Callable) -> bool:
    module = getattr(func, "__module__", "") or ""
    if module.split(".")[0] not in PACKAGES:
        return False
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return not FUNCTION_PARAMETERS.intersection(params)


def _safe_saves(dispatcher: object) -> object:
    """Make ``dispatcher``'s cache writes ignore OSError (the compiled code is still used)."""
    cache = getattr(dispatcher, "_cache", None)
    save = getattr(cache, "save_overload", None)
    if save is not None:
        def save_overload(*args: object, **kwargs: object) -> None:
            try:
                save(*args, **kwargs)
            except OSError:
                pass

        cache.save_overload = save_overload
    return dispatcher


def _with_cache(decorator: Callable) -> Callable:
    """``decorator`` (numba.njit or numba.jit) with cache=True for `_cacheable` functions, in
    both of its forms: ``@njit`` / ``njit(func)`` and ``@njit(signature, **options)``."""

    def apply(func: Callable, args: tuple, kwargs: dict) -> object:
        if _cacheable(func) and "cache" not in kwargs:
            return _safe_saves(decorator(*args, cache=True, **kwargs)(func))
        return decorator(*args, **kwargs)(func)

    @functools.wraps(decorator)
    def wrapper(*args: object, **kwargs: object) -> object:
        if args and inspect.isfunction(args[0]):  # @njit or njit(func, **options)
            return apply(args[0], args[1:], kwargs)
        return lambda func: apply(func, args, kwargs)  # njit(signature, **options)

    return wrapper


def _forget(packages: tuple[str, ...]) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[name]


def import_umap() -> None:
    """Import pynndescent and umap-learn (once per process) with numba caching on.

    A no-op when either is already imported or ``GEOVAE_NUMBA_CACHE=0``. If numba cannot
    cache (no writable cache folder), the packages are imported the ordinary way.
    """
    if os.environ.get("GEOVAE_NUMBA_CACHE") == "0":
        if not any(p in sys.modules for p in PACKAGES):
            log.info("compiling umap-learn's and pynndescent's numba functions (tens of "
                     "seconds): GEOVAE_NUMBA_CACHE=0 keeps no cache, so every run compiles")
        return
    with _lock:
        if any(p in sys.modules for p in PACKAGES):
            return
        import numba

        if not cache_ready():
            log.info("compiling umap-learn's and pynndescent's numba functions once (tens of "
                     "seconds, for the kNN graph and UMAP); later runs reuse numba's on-disk "
                     "cache")

        njit, jit = numba.njit, numba.jit
        numba.njit, numba.jit = _with_cache(njit), _with_cache(jit)
        try:
            import pynndescent  # noqa: F401
            import umap.umap_  # noqa: F401
        except Exception:  # e.g. "cannot cache function ...: no locator available"
            _forget(PACKAGES)
        finally:
            numba.njit, numba.jit = njit, jit
        if not all(p in sys.modules for p in PACKAGES):
            import pynndescent  # noqa: F401
            import umap.umap_  # noqa: F401,F811


#: a module of each package whose functions numba compiles (at import or first use)
_PROBES = (("pynndescent", "utils.py"), ("umap", "layouts.py"))


def cache_ready() -> bool:
    """Whether numba's on-disk cache holds compiled code of every package in `PACKAGES`
    (index files ``<module>.<function>-<line>.pyXY.nbi`` where numba's locator for the
    module's source file puts them). Never raises: False when it cannot tell."""
    import importlib.util

    try:
        from numba.core import caching

        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl

        tag = f".py{sys.version_info[0]}{sys.version_info[1]}"
        for package, module in _PROBES:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.origin:
                return False
            source = os.path.join(os.path.dirname(spec.origin), module)
            stem = os.path.splitext(module)[0] + "."
            for locator_class in impl._locator_classes:
                locator = locator_class.from_function(_probe, source)
                if locator is not None:
                    break
            else:
                return False
            folder = locator.get_cache_path()
            if not os.path.isdir(folder) or not any(
                    name.startswith(stem) and name.endswith(tag + ".nbi")
                    for name in os.listdir(folder)):
                return False
        return True
    except Exception:  # noqa: BLE001 - a guess for a log line must never fail a run
        return False


def _probe() -> None:
    """A stand-in function for numba's cache locators (they read its line number)."""
