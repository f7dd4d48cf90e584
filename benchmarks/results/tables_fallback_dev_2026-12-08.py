"""Is the resolution rule's no-stable-split fallback (resolution 1) what sinks `geovae fit
table.csv` on breast cancer (issue 24 item 6)? Development only (breast cancer and wine, both
of which already informed table settings; seeds 0-4 and 15-24; 2026-12-08, main 6d6befc;
nothing reported, nothing shipped): each seed's default CLI fit (as `bench_tables.py` runs it)
re-clustered with `geovae.cluster(resolution="auto")` as it is (``default``) and with the
stability floor `MIN_STABILITY` at 0 (``no_floor``: the most stable split always wins).
Record: tables_fallback_dev_2026-12-08.jsonl (one line per data set and seed).

    OMP_NUM_THREADS=1 python benchmarks/results/tables_fallback_dev_2026-12-08.py breast_cancer 15
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # noqa: F401 - before torch (OpenMP settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(name: str, seed: int) -> None:
    import anndata as ad
    import bench_tables as bt
    from sklearn.metrics import adjusted_rand_score

    import geovae.tools.resolution as res

    folder = Path(f"tables_fallback_dev/{name}_{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    csv = bt.write_table(name, seed, folder)
    truth = bt.table_labels(csv)
    out = folder / "fit.h5ad"
    if not out.exists():
        bt.fit_table(csv, out, seed, *bt.FITS["geovae"])
    rec: dict = {"data": name, "seed": seed}
    for variant, floor in (("default", res.MIN_STABILITY), ("no_floor", 0.0)):
        a = ad.read_h5ad(out)
        res.MIN_STABILITY = floor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geovae.cluster(a, resolution="auto", seed=seed, umap=False)
        pred = a.obs["geovae_cluster"].astype(str).to_numpy()
        info = a.uns["geovae"]["cluster"]
        rec[variant] = {"ari": round(adjusted_rand_score(truth, pred), 3),
                        "clusters": len(set(pred)), "resolution": float(info["resolution"]),
                        "fallback": bool(info.get("resolution_choice", {}).get("fallback"))}
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
