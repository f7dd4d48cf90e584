"""Reading an ``.h5ad`` for an out-of-core run, and writing its outputs without a second copy
of X in memory.

`read_backed` loads only ``obs``, ``var``, ``obsm`` and ``uns`` (not X, layers, raw or obsp,
which anndata's own backed mode would load except X): the result is an AnnData without X
that names its file (`geovae.data.h5.is_backed`), and the model reads the matrix from the
file in chunks.

`write_backed` copies the input file byte for byte to the (temporary, staged) output path,
then rewrites ``obs``, ``obsm`` and ``uns`` and the ``obsp`` entries the run made, in place
with h5py: X, layers, raw, var and the input's other obsp entries are the input's, copied by
the file system. The caller renames the temporary into place (`geovae.io.write.OutputSet`), so
the output is still atomic.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anndata as ad

from geovae.data.h5 import BACKED_ATTR, backed_path, is_backed
from geovae.errors import InputError

#: what `read_backed` loads into memory
LOADED = ("obs", "var", "obsm", "uns")


def read_backed(path: Path) -> ad.AnnData:
    """``path``'s obs, var, obsm and uns in memory; its matrices stay on disk."""
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(path, "r") as f:
            parts = {k: read_elem(f[k]) for k in LOADED if k in f}
            if "X" not in f:
                raise InputError(f"'{path}' has no X matrix: backed mode reads X or a layer")
    except InputError:
        raise
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read '{path}' as .h5ad (corrupt or truncated file?): "
                         f"{reason}; re-export it with anndata's write_h5ad") from exc
    adata = ad.AnnData(**parts)
    setattr(adata, BACKED_ATTR, Path(path).resolve())
    return adata


def write_backed(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write a backed ``adata`` (its file's matrices; obs, obsm, obsp and uns from memory) to
    ``path`` without loading X."""
    import h5py
    from anndata.io import write_elem

    adata.strings_to_categoricals()
    shutil.copyfile(backed_path(adata), path)
    with h5py.File(path, "r+") as f:
        for key in ("obs", "obsm", "uns"):
            if key in f:
                del f[key]
        write_elem(f, "obs", adata.obs)
        write_elem(f, "obsm", dict(adata.obsm))
        write_elem(f, "uns", dict(adata.uns))
        if "obsp" not in f:
            write_elem(f, "obsp", {})
        for key, value in adata.obsp.items():
            if key in f["obsp"]:
                del f["obsp"][key]
            write_elem(f["obsp"], key, value)


def write_any(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """``adata.write_h5ad(path)``, or `write_backed` for a backed AnnData."""
    if is_backed(adata):
        write_backed(adata, path)
    else:
        adata.write_h5ad(path)
