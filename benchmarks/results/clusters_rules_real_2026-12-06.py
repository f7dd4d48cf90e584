"""The c*GMΔVAE merge rules (elbo vs demp) on real data, one fit per seed, each rule on the
same kept weights (bench_clusters.run_rules). Run: python THIS.py kang|pbmc SEED (paths to
/work/main: edit them)."""
import json
import sys

sys.path.insert(0, "/work/main/benchmarks")
import anndata as ad
import bench_clusters as bc


def load(name, seed):
    if name == "kang":
        a = ad.read_h5ad("/work/main/data/kang_counts.h5ad")
        a.obs["condition"] = a.obs["stim"].astype(str)
        return a, {"likelihood": "nb"}, "seurat_annotations"
    a = ad.read_h5ad("/work/main/data/pbmc68k_counts.h5ad")
    a.obs["condition"] = "one"
    return a, {"likelihood": "nb"}, "bulk_labels"

bc.load = load
data, seed = sys.argv[1], int(sys.argv[2])
recs = bc.run_rules(data, ["cgmvae_elbo", "cgmvae_demp"], 15, seed, 0)
for r in recs:
    r.pop("pairs", None)
    kept = {k: v for k, v in r.items() if not isinstance(v, (list, dict)) or k == "cutoffs"}
    print(json.dumps(kept, default=str), flush=True)
