"""Write synthetic single-cell count matrices to ``.h5ad`` in chunks, for the scaling benchmark.

Negative-binomial (gamma-Poisson) counts with a few cell types, a batch column and per-cell
library sizes, tuned to ~93% zeros (as 10x data), written straight to HDF5 as CSR in anndata's
encoding, ``--chunk`` cells at a time: the dense matrix is never in memory (peak memory is a
chunk plus the obs table).

    OMP_NUM_THREADS=1 python benchmarks/make_synthetic.py --cells 10000 100000 1000000 \\
        --genes 2000 --out-dir DATA_DIR
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

THETA = 2.0  # NB inverse dispersion


def gene_means(n_genes: int, n_types: int, n_batches: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """(type x gene means, batch x gene multipliers): log-normal base expression, 10% marker
    genes shifted per type, a mild per-gene batch effect."""
    base = rng.lognormal(mean=-3.8, sigma=1.6, size=n_genes)
    means = np.tile(base, (n_types, 1))
    for t in range(n_types):
        markers = rng.choice(n_genes, n_genes // 10, replace=False)
        means[t, markers] *= np.exp(rng.normal(1.0, 1.0, size=len(markers)))
    batch = np.exp(rng.normal(0.0, 0.2, size=(n_batches, n_genes)))
    return means, batch


def write_synthetic(path: Path, n_cells: int, n_genes: int = 2000, n_types: int = 5,
                    n_batches: int = 3, seed: int = 0, chunk: int = 5000) -> dict:
    """Write ``path``; returns facts (zeros fraction, nnz, seconds)."""
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    means, batch_eff = gene_means(n_genes, n_types, n_batches, rng)
    types = rng.integers(0, n_types, n_cells)
    batches = rng.integers(0, n_batches, n_cells)
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{t}" for t in types]),
                        "batch": pd.Categorical([f"batch{b}" for b in batches])},
                       index=pd.Index([f"cell{i}" for i in range(n_cells)]))
    var = pd.DataFrame(index=pd.Index([f"gene{j}" for j in range(n_genes)]))
    t0 = time.perf_counter()
    nnz = 0
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        g = f.create_group("X")
        g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        g.attrs["shape"] = (n_cells, n_genes)
        data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype="float32",
                                chunks=(1 << 18,))
        indices = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype="int32",
                                   chunks=(1 << 18,))
        indptr = g.create_dataset("indptr", shape=(n_cells + 1,), dtype="int64")
        indptr[0] = 0
        for start in range(0, n_cells, chunk):
            stop = min(start + chunk, n_cells)
            lib = rng.lognormal(0.0, 0.35, size=(stop - start, 1))
            mu = means[types[start:stop]] * batch_eff[batches[start:stop]] * lib
            counts = rng.poisson(rng.gamma(THETA, mu / THETA)).astype(np.float32)
            block = sp.csr_matrix(counts)
            k = block.nnz
            data.resize((nnz + k,))
            indices.resize((nnz + k,))
            data[nnz:] = block.data
            indices[nnz:] = block.indices.astype(np.int32)
            indptr[start + 1:stop + 1] = block.indptr[1:] + nnz
            nnz += k
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    tmp.replace(path)
    return {"path": str(path), "cells": n_cells, "genes": n_genes, "nnz": nnz,
            "zeros": 1 - nnz / (n_cells * n_genes), "seconds": time.perf_counter() - t0,
            "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--out-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "geovae_scaling")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for n in args.cells:
        path = args.out_dir / f"synthetic_{n}x{args.genes}.h5ad"
        facts = write_synthetic(path, n, args.genes, seed=args.seed, chunk=args.chunk)
        print(f"{path}: {n} x {args.genes}, {facts['zeros']:.1%} zeros, "
              f"{facts['bytes'] / 1e6:.0f} MB, {facts['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
