#!/usr/bin/env python3
"""Split one .h5ad into a reference and a query by the values of an obs column.

Used by the Snakefile's ``split`` rule (``script:``, via the ``snakemake`` object) and
runnable on its own::

    python split.py data/kang_counts.h5ad ref.h5ad query.h5ad --key stim \
        --reference CTRL --query STIM [--max-cells 300] [--seed 0]

``--max-cells N`` keeps at most N cells per side, drawn without replacement with
``numpy.random.default_rng(seed)`` and kept in input order (for quick runs and tests).
Outputs are written to a temporary file beside each target and renamed into place; bad
input is one line on stderr and exit code 2.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class SplitError(ValueError):
    """Bad input or options: the message names the problem and the fix."""


def _values(v: str | Sequence[str]) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in v]


def pick(labels: Sequence[str], wanted: list[str], max_cells: int, seed: int) -> np.ndarray:
    """Indices (sorted) of the cells whose label is in ``wanted``, at most ``max_cells``."""
    idx = np.flatnonzero(np.isin(np.asarray(labels, dtype=str), wanted))
    if max_cells and idx.size > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_cells, replace=False))
    return idx


def split(src: str, ref_out: str, query_out: str, key: str, reference: list[str],
          query: list[str], max_cells: int = 0, seed: int = 0) -> tuple[int, int]:
    """Write the reference and query cells of ``src`` to two .h5ad files; return their sizes."""
    import anndata as ad

    if set(reference) & set(query):
        raise SplitError(f"values {sorted(set(reference) & set(query))} are in both the "
                         "reference and the query: give each value to one side")
    if max_cells < 0:
        raise SplitError(f"--max-cells is {max_cells}: give 0 (all cells) or a positive number")
    if not Path(src).is_file():
        raise SplitError(f"input '{src}' does not exist: check the path (config 'input')")
    adata = ad.read_h5ad(src)
    if key not in adata.obs:
        raise SplitError(f"'{key}' is not an obs column of {src} (columns: "
                         f"{', '.join(map(str, adata.obs.columns))}): set config 'split_key'")
    labels = adata.obs[key].astype(str).to_numpy()
    present = sorted(set(labels))
    sides = []
    for name, wanted, out in (("reference", reference, ref_out), ("query", query, query_out)):
        idx = pick(labels, wanted, max_cells, seed)
        if idx.size == 0:
            raise SplitError(f"no cell of {src} has {key} in {wanted} ({key} values: "
                             f"{', '.join(present)}): fix config '{name}'")
        sides.append((adata[idx].copy(), out))
    for sub, out in sides:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out).with_name(f".{Path(out).name}.split-tmp-{os.getpid()}")
        try:
            sub.write_h5ad(tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return sides[0][0].n_obs, sides[1][0].n_obs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Split an .h5ad into reference and query cells.")
    p.add_argument("input")
    p.add_argument("reference_out")
    p.add_argument("query_out")
    p.add_argument("--key", required=True)
    p.add_argument("--reference", action="append", required=True)
    p.add_argument("--query", action="append", required=True)
    p.add_argument("--max-cells", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        n_ref, n_query = split(a.input, a.reference_out, a.query_out, a.key, a.reference,
                               a.query, a.max_cells, a.seed)
    except SplitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"split {a.input} by {a.key}: {n_ref} reference cells -> {a.reference_out}, "
          f"{n_query} query cells -> {a.query_out}", file=sys.stderr)
    return 0


if __name__ == "__main__" and "snakemake" not in globals():
    sys.exit(main())
elif "snakemake" in globals():  # run by Snakemake's script: directive
    smk = globals()["snakemake"]
    args = [smk.input[0], smk.output.reference, smk.output.query,
            "--key", smk.params.key, "--max-cells", str(smk.params.max_cells),
            "--seed", str(smk.params.seed)]
    for v in _values(smk.params.reference):
        args += ["--reference", v]
    for v in _values(smk.params.query):
        args += ["--query", v]
    real_stderr = sys.stderr
    with open(smk.log[0], "w") as log:
        sys.stderr = log
        try:
            code = main(args)
        finally:
            sys.stderr = real_stderr
    if code:
        print(Path(smk.log[0]).read_text().strip(), file=sys.stderr)
        sys.exit(code)
