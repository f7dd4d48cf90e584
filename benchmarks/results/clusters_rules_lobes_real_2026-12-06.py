"""The c*GMΔVAE merge rules (elbo, demp, lobes) on the bundled real data, K = 15, default
epochs, one fit per seed, each rule on the same kept weights (bench_clusters.run_rules).
Run from the repository root: python benchmarks/results/THIS.py kang|pbmc SEED >> rec.jsonl
(kang: `stim` as the batch key, labels `seurat_annotations`; pbmc68k: one batch,
`bulk_labels`)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import anndata as ad  # noqa: E402
import bench_clusters as bc  # noqa: E402


def load(name, seed):
    if name == "kang":
        a = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
        a.obs["condition"] = a.obs["stim"].astype(str)
        return a, {"likelihood": "nb"}, "seurat_annotations"
    a = ad.read_h5ad(ROOT / "data" / "pbmc68k_counts.h5ad")
    a.obs["condition"] = "one"
    return a, {"likelihood": "nb"}, "bulk_labels"


bc.load = load
data, seed = sys.argv[1], int(sys.argv[2])
for r in bc.run_rules(data, ["cgmvae_elbo", "cgmvae_demp", "cgmvae_lobes"], 15, seed, 0):
    print(json.dumps(r, default=str), flush=True)
