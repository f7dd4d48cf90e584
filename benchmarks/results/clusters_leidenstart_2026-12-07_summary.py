"""Issue 24: the c*GMΔVAE's mixture started from Leiden clusters of the pretrained latent
(``mixture_start="leiden"``, the default since this record) against the Bayesian-GMM start
(``"gmm"``, the default before) and the baselines, per data set, paired over seeds (each seed
draws the data and seeds every method). Run from the repository root:
python THIS.py clusters_leidenstart_2026-12-07.jsonl [clusters_item2_2026-12-07.jsonl]
[clusters_leidenstart_scvi_2026-12-07.jsonl]
(markdown to stdout). The second file gives the GMM start (``cgmvae`` there: main before this
change) on the simulations; the third scvi-tools' SCVI + Leiden (`bench_donors.py`: the same
cells; its ``sim`` / ``sim_hard`` are bench_clusters' ``medium`` / ``hard``, its ``kang_subset`` the
``kang`` here)."""
import json
import sys
from collections import defaultdict

import numpy as np
from scipy import stats

RENAME = {"kang_subset": "kang", "sim": "medium", "sim_hard": "hard"}


def load(paths: list[str]) -> dict:
    out: dict = defaultdict(dict)  # (data, k) -> method -> seed -> (ari, nmi, n_used)
    for i, path in enumerate(paths):
        for line in open(path):
            r = json.loads(line)
            data = RENAME.get(r["data"], r["data"])
            method = r["method"]
            if i == 1 and method == "cgmvae":
                method = "cgmvae_gmmstart"  # main before the change
            if i == 1 and method != "cgmvae_gmmstart":
                continue
            n_used = r["clusters"] if method == "scvi_leiden" else r["n_used"]
            ks = [r.get("k")] if method not in ("vae_leiden", "pca_leiden", "scvi_leiden") \
                else [None]
            for k in ks:
                out[(data, k)].setdefault(method, {})[r["seed"]] = (r["ari"], r["nmi"], n_used)
    return out


def main() -> None:
    runs = load(sys.argv[1:])
    datasets = sorted({d for d, _ in runs})
    order = ("cgmvae", "cgmvae_gmmstart", "vae_leiden", "scvi_leiden", "pca_leiden")
    print("| data | K | method | n | ARI | NMI | in use | ARI − default (paired t p) |")
    print("|---|---|---|---|---|---|---|---|")
    for data in datasets:
        ks = sorted(k for d, k in runs if d == data and k is not None)
        base = runs.get((data, None), {})
        for k in ks:
            rows = {**runs[(data, k)], **base}
            ref = rows.get("cgmvae", {})
            for m in order:
                if m not in rows:
                    continue
                seeds = sorted(rows[m])
                a = np.array([rows[m][s][0] for s in seeds])
                nmi = np.array([rows[m][s][1] for s in seeds])
                used = np.array([rows[m][s][2] for s in seeds], dtype=float)
                cell = ""
                common = [s for s in seeds if s in ref]
                if m != "cgmvae" and len(common) >= 2:
                    d = np.array([rows[m][s][0] - ref[s][0] for s in common])
                    p = stats.ttest_1samp(d, 0).pvalue
                    cell = f"{d.mean():+.3f} (p {p:.2g}; default higher in " \
                           f"{int((d < 0).sum())}/{len(d)})"
                sd = f"{a.std(ddof=1):.3f}" if len(a) > 1 else "–"
                print(f"| {data} | {k} | {m} | {len(seeds)} | {a.mean():.3f} ± {sd}"
                      f" | {nmi.mean():.3f} | {np.nanmean(used):.1f} | {cell} |")


if __name__ == "__main__":
    main()
