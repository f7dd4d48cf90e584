"""Fit and save the arrays of `bench_loto.py`'s geovae runs, nothing else (issue 23): a lean
`bench_loto.py --save-arrays` (no candidate scores, no posterior-predictive z-scores), so that
novelty rules can be rescored offline (`loto_depth.py`) on a busy machine.

Same draws, genes, fit and transfer as `bench_loto.run_geovae` (``--dev``: the development
split, the bundled Kang subset). One ``.npz`` per (pair, seed, held-out type) in ``--out``;
runs already saved are skipped, so several processes may share a folder (``--shard i/n``)::

    nice -n 10 python benchmarks/loto_fit_arrays.py --dev --out dev/ --shard 0/1
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loto import check_pairs, dev_cells, report_cells, run_split, tasks  # noqa: E402


def thin(query, seed: int, low: float, rows: np.ndarray | None = None) -> None:
    """Binomially thin each query cell's counts (in place) to a share exp(-U(0, -log low)):
    depth that varies within every type independently of biology (``--thin``); ``rows``
    (a mask): only those cells, the rest kept whole (``--thin-unseen``)."""
    rng = np.random.default_rng([seed, 7])
    x = sp.csr_matrix(query.X, dtype=np.float32)
    keep = np.exp(-rng.uniform(0.0, -np.log(low), x.shape[0]))
    if rows is not None:
        keep = np.where(rows, keep, 1.0)
    x.data = rng.binomial(x.data.astype(np.int64), np.repeat(keep, np.diff(x.indptr))
                          ).astype(np.float32)
    x.eliminate_zeros()
    query.X = x


def fit_one(ref, queries: list, seed: int, epochs: int, query_epochs: int
            ) -> list[dict[str, np.ndarray]]:
    """One leave-one-type-out run's arrays (the query's, then the reference's), one dict per
    query mapped onto the same reference model."""
    import geovae

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(ref, batch_key="batch", label_key="type", seed=seed, epochs=epochs,
                           progress=False, heldout_samples=0, threads=1)
        return [map_one(ref, query, model, seed, query_epochs) for query in queries]


def map_one(ref, query, model, seed: int, query_epochs: int) -> dict[str, np.ndarray]:
    """`geovae.transfer` of one query; its arrays."""
    import geovae
    from geovae import _keys as K

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = geovae.transfer(query, model, epochs=query_epochs, seed=seed,
                                 progress=False, threads=1)
    probs = np.asarray(query.obsm[K.LABEL_PROBS])
    cells, n_ref = mapped.reference_cells, ref.n_obs
    return {"z": np.asarray(query.obsm[K.REP]), "nelbo": cells.nelbo[n_ref:],
            "depth": cells.log_library[n_ref:], "pred_code": probs.argmax(1),
            "maxprob": probs.max(1), "conf": query.obs[K.LABEL_CONFIDENCE].to_numpy(),
            "ref_z": cells.latent[:n_ref], "ref_labels": cells.labels[:n_ref],
            "ref_nelbo": cells.nelbo[:n_ref], "ref_depth": cells.log_library[:n_ref]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dev", action="store_true")
    p.add_argument("--pairs", type=lambda s: s.split(","), default=None)
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--types", type=lambda s: s.split(","), default=[])
    p.add_argument("--cap", type=int, default=200)
    p.add_argument("--min-ref", type=int, default=50)
    p.add_argument("--min-query", type=int, default=20)
    p.add_argument("--n-top-genes", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--query-epochs", type=int, default=20)
    p.add_argument("--shard", default="0/1")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--thin", type=Path, default=None, help="also map a thinned copy of the "
                   "query (`thin`) onto the same model; its arrays go to this folder")
    p.add_argument("--thin-low", type=float, default=0.2)
    p.add_argument("--thin-unseen", type=Path, default=None, help="also map a copy whose "
                   "UNSEEN type's cells alone are thinned (shallower and novel at once, as "
                   "pbmc68k's unseen cells; development split only); arrays to this folder")
    args = p.parse_args()
    args.pairs = check_pairs(args.pairs, args.dev)
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    todo = tasks(dev_cells() if args.dev else report_cells(), args)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (pair, seed, held_out, ref_all, query_all) in enumerate(todo):
        path = args.out / f"{pair}_{seed}_{held_out}.npz"
        if i % n_shards != shard or path.exists():
            continue
        ref, query = run_split(ref_all, query_all, pair, held_out, args.n_top_genes)
        truth = query.obs["type"].astype(str).to_numpy()
        t0 = time.perf_counter()
        queries, paths = [query], [path]
        novel = ~np.isin(truth, sorted(set(ref.obs["type"].astype(str))))
        for folder, rows in ((args.thin, None), (args.thin_unseen, novel)):
            if folder is not None:
                thinned = query.copy()
                thin(thinned, seed, args.thin_low, rows)
                folder.mkdir(parents=True, exist_ok=True)
                queries.append(thinned)
                paths.append(folder / path.name)
        for arrays, out in zip(fit_one(ref, queries, seed, args.epochs, args.query_epochs),
                               paths, strict=True):
            np.savez_compressed(out, **arrays, novel=novel)
        print(f"{path.name} {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
