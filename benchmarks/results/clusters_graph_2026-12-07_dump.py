"""One default c*GMΔVAE fit of a bench_clusters data set, pickled with its kept weights (the
state where training ends, before the merge and delete moves) so that every merge rule can
be run on the SAME fit afterwards (`..._eval.py`). Run from the repository root:
python THIS.py DATA K SEED OUT.pt [EPOCHS]; DATA a `cluster_sets.load` name, or kang / pbmc (the
bundled Kang subset with batch key stim, pbmc68k) or small (4 types, 1,000 x 200)."""
import copy
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from cluster_sets import load  # noqa: E402

import geovae  # noqa: E402
from geovae.modules.cgmvae import CGMVAEModule  # noqa: E402

data, k, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else None
if data in ("kang", "pbmc"):  # real data, as clusters_rules_real_2026-12-06.py ran them
    import anndata as ad

    root = Path(__file__).resolve().parents[2] / "data"
    adata = ad.read_h5ad(root / ("kang_counts.h5ad" if data == "kang" else
                                 "pbmc68k_counts.h5ad"))
    adata.obs["condition"] = adata.obs["stim"].astype(str) if data == "kang" else "one"
    kw, truth = {"likelihood": "nb"}, ("seurat_annotations" if data == "kang" else "bulk_labels")
elif data == "small":  # the slow test's small counts (tests/modules/test_cgmvae_merging.py)
    from geovae.datasets import simulate_counts

    adata = simulate_counts(n_cells=1000, n_genes=200, n_types=4, n_conditions=2,
                            condition_prob=0.2, seed=seed)
    kw, truth = {"likelihood": "nb"}, "cell_type"
else:
    adata, kw, truth = load(data, seed)
saved = {}
original = CGMVAEModule.after_training


def keep(module, source, idx, s):
    saved.update(state=copy.deepcopy(module.state_dict()), args=(source, idx, s),
                 fixed=module.weights_fixed)
    original(module, source, idx, s)


CGMVAEModule.after_training = keep
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = geovae.fit(adata, model="cgmvae", model_options={"n_clusters": k}, seed=seed,
                       epochs=epochs, progress=False, device="cpu", heldout_samples=0,
                       batch_key="condition", **kw)
CGMVAEModule.after_training = original
saved.update(model=model, written=adata.obsm["geovae_cluster_probs"].argmax(1),
             labels=adata.obs[truth].astype(str).to_numpy(), seconds=time.perf_counter() - t0,
             data=data, k=k, seed=seed, info={x: adata.uns["geovae"][x] for x in
                                              ("best_epoch",)},
             epochs_run=len(adata.uns["geovae"]["loss_history"]["validation"]))
torch.save(saved, out)
print(out, round(saved["seconds"], 1), saved["epochs_run"])
