"""One default c*GMΔVAE fit of a bench_clusters data set; dumps the kept weights' mixture
draws (`merging.mixture_draws`) with the merge subsample's counts, batch covariates and
labels, for `..._offline.py`. Run from the repository root: python THIS.py DATA K SEED OUT.pt"""
import copy
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_clusters as bc  # noqa: E402
import torch  # noqa: E402

import geovae  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS, CGMVAEModule  # noqa: E402
from geovae.modules.deletion import seeded_subsample  # noqa: E402
from geovae.modules.merging import mixture_draws  # noqa: E402

data, k, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
adata, kw, truth = bc.load(data, seed)
labels = adata.obs[truth].astype(str).to_numpy()
saved = {}
original = CGMVAEModule.after_training


def keep(module, source, idx, s):
    saved.update(state=copy.deepcopy(module.state_dict()), args=(source, idx, s))
    original(module, source, idx, s)


CGMVAEModule.after_training = keep
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = geovae.fit(adata, model="cgmvae", model_options={"n_clusters": k}, seed=seed,
                       epochs=None, progress=False, device="cpu", heldout_samples=0,
                       batch_key="condition", **kw)
CGMVAEModule.after_training = original
module = model.module
source, idx, s = saved["args"]
module.load_state_dict(saved["state"])
d = mixture_draws(module, source, idx, s, DELETE_CELLS)
sub = seeded_subsample(idx, DELETE_CELLS, s)
xs, cs = [], []
for b in source.batches(sub, 1024):
    xs.append(b.x.float())
    cs.append(b.c)
d.update(x=torch.cat(xs), c=None if cs[0] is None else torch.cat(cs),
         labels=labels[sub.cpu().numpy()], active=module.active.clone(),
         alpha=module.alpha.clone(), n_obs=module.n_obs)
torch.save(d, out)
