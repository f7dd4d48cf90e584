"""Development runs (2026-12-07 16:00-16:45 UTC, main 23b7aa0, 2 shared cores, nice 0, helpers
niced beside) that chose ``mixture_start="leiden"``: for ``cgmvae_ls`` each fit patches
`geovae.modules.mixture_start.start_mixture` with a Leiden start (scanpy neighbours at their
defaults on the posterior means; src builds the same 15-NN graph exactly with
`geovae.graph.neighbors.neighbors_graph`); ``cgmvae`` is main's default then (the Bayesian-GMM
start). bench_clusters.run on hard K = 15 seeds 0-4, hard K = 5 seeds 0-2, issue2k K = 20,
blobs K = 15, rare K = 15 seeds 0-2, and the whole bundled Kang subset (batch stim) K = 15
seeds 0-2. Run: python THIS.py DATA K SEEDS METHODS OUT. Record:
clusters_leidenstart_dev_2026-12-07.jsonl."""
import json
import sys
from pathlib import Path

import geovae  # noqa: F401  (before torch: the OpenMP wait policy)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_clusters as bc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from geovae.modules import mixture_start as ms  # noqa: E402


def leiden_start(module, source, idx, seed):
    import anndata as ad
    import scanpy as sc
    means, z = ms.latent_draws(module, source, idx, seed)
    a = ad.AnnData(means.numpy().astype(np.float32))
    sc.pp.neighbors(a, use_rep="X", n_neighbors=15, random_state=seed)
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, resolution=1.0,
                 random_state=seed)
    lab = a.obs["leiden"].astype(int).to_numpy()
    K = module.n_clusters
    m = means.numpy()
    while lab.max() + 1 > K:  # fold the smallest cluster into the nearest centroid's
        sizes = np.bincount(lab)
        s = int(np.argmin(sizes))
        cent = np.stack([m[lab == j].mean(0) for j in range(len(sizes))])
        d = ((cent - cent[s]) ** 2).sum(1)
        d[s] = np.inf
        lab[lab == s] = int(np.argmin(d))
        lab = np.unique(lab, return_inverse=True)[1]
    resp = torch.zeros(len(lab), K, dtype=torch.float64)
    resp[torch.arange(len(lab)), torch.as_tensor(lab)] = 1.0
    mass = resp.sum(0).clamp(min=1e-6)[:, None]
    loc = resp.T @ z / mass
    sd = ((resp.T @ z.square()) / mass - loc.square()).clamp(min=1e-4).sqrt()
    empty = resp.sum(0) == 0
    sd[empty] = 1.0
    last = module.prior_net[-1]
    with torch.no_grad():
        last.weight.zero_()
        bias = torch.cat([loc, ms.inverse_softplus(sd - 1e-3)], dim=-1)
        last.bias.copy_(bias.reshape(-1).to(last.bias))
    ms.distil_classifier(module, torch.cat([means, z]).to(last.bias),
                         torch.cat([resp, resp]).to(last.bias), seed)
    weights = (resp.sum(0) / len(lab)).numpy()
    module.gamma.copy_(module.alpha + module.n_obs * torch.as_tensor(weights).to(module.gamma))
    print(f"  leiden start: {lab.max()+1} clusters", file=sys.stderr)
    return weights

data, k, seeds, methods, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
orig = ms.start_mixture
_load = bc.load
def load(name, seed):
    if name not in ("kang", "pbmc"):
        return _load(name, seed)
    import anndata as ad
    a = ad.read_h5ad(Path(__file__).resolve().parents[2] / "data" / (
        "kang_counts.h5ad" if name == "kang" else "pbmc68k_counts.h5ad"))
    a.obs["condition"] = a.obs["stim"].astype(str) if name == "kang" else "one"
    return a, {"likelihood": "nb"}, ("seurat_annotations" if name == "kang" else "bulk_labels")
bc.load = load
for seed in [int(s) for s in seeds.split(",")]:
    for method in methods.split(","):
        kk = bc.N_TYPES if k == "truth" else int(k)
        ms.start_mixture = leiden_start if method == "cgmvae_ls" else orig
        rec = bc.run(data, "cgmvae" if method == "cgmvae_ls" else method, kk, seed, 0)
        rec["method"] = method
        keys = ("data", "method", "k", "seed", "ari", "nmi", "n_used", "seconds")
        print(json.dumps({x: rec[x] for x in keys}), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
