"""Where does the warm-started c*GMΔVAE gain or lose its clusters (issue 24)? One fit of a
`bench_clusters.py` development set, traced: ARI and components in use of argmax q(y|z) at
the posterior mean every 5 epochs after the start, then, on the kept weights, each post-hoc
move and readout. Development data only.

Run (one line of JSON per fit)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/trace_mixture.py hard 0 5 \
        '{"warm_start": 0.75}' >> trace.jsonl
    python benchmarks/trace_mixture.py --summary trace.jsonl

Arguments: data set (`bench_clusters.LEVELS`, ``rare``, ``blobs``), seed (data and model), K,
and optionally a JSON object of c*GMΔVAE model options plus ``epochs`` (default 60; 0: the
model's default, `default_epochs`, with early stopping) and the
diagnostic switches ``_freeze_gamma`` / ``_freeze_prior`` (after the hold the mixture
weights' gamma / the components stay where they are; not model options) and
``_start_inits`` (`mixture_start.START_INITS`: initialisations of the start's GMM).

Recorded per fit: ``trace`` (epoch:phase, ARI, components in use by argmax, by weight >=
0.5%), and ``post``: for the kept weights as they are (``kept``), after the default delete
moves (``del``), after delete moves that may propose every component (``del_all``: the bound
alone decides), after merge moves then the default delete moves (``merge_del``), each read
out two ways: ``mean`` = argmax q(y|z) at the posterior mean of z, ``pred`` = argmax of the
predictive q(y|x) over 32 draws (the model's ``cluster_samples`` default, what
``geovae_cluster_probs`` holds). ``final``: what the fit wrote (its own options' moves).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import adjusted_rand_score

import geovae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clusters import load, n_used  # noqa: E402

#: post-hoc variants and readouts (module docstring)
VARIANTS = ("kept", "del", "del_all", "merge_del")
READOUTS = ("mean", "pred")


def fit(data: str, seed: int, k: int, opts: dict[str, Any]) -> dict[str, Any]:
    """One traced fit (module docstring)."""
    from geovae.modules import cgmvae as cg
    from geovae.modules import deletion
    from geovae.modules.cgmvae import CGMVAEModule
    from geovae.modules.merging import merge_components

    opts = dict(opts)
    epochs = int(opts.pop("epochs", 60))  # 0: the model's default (early stopping decides)
    flags = {key: opts.pop(key) for key in list(opts) if key.startswith("_")}
    adata, kw, truth = load(data, seed)
    labels = adata.obs[truth].to_numpy()
    trace: list[list[Any]] = []
    post: dict[str, Any] = {}

    @torch.no_grad()
    def probe(module: Any, source: Any, predictive: bool = False) -> list[Any]:
        was = module.training
        module.eval()
        probs = []
        with torch.random.fork_rng():  # the training's random stream is left as it was
            torch.manual_seed(3)
            for b in source.batches(torch.arange(source.n_obs), 1024):
                if predictive:
                    probs.append(module.cluster_probs(b.x, b.c, 32).cpu())
                else:
                    z = module.latent_mean(b.x, b.c)
                    probs.append(torch.softmax(module.logits(z), -1).cpu())
        module.train(was)
        pred = torch.cat(probs).numpy().argmax(1)
        w = (module.gamma / module.gamma.sum()).cpu().numpy()
        return [round(adjusted_rand_score(labels, pred), 3), n_used(pred),
                int((w >= 0.005).sum())]

    before, after = CGMVAEModule.before_epoch, CGMVAEModule.after_training
    greedy = deletion.greedy_deletions

    def before_epoch(self: Any, epoch: int, n: int, source: Any, idx: Any, s: int) -> bool:
        if self.phase != "pretrain" and epoch % 5 == 0 and epoch > 0:
            trace.append([f"e{epoch}:{self.phase}", *probe(self, source)])
        phase = self.phase
        changed = before(self, epoch, n, source, idx, s)
        if self.phase == "mixture" and self.warm_start:
            if flags.get("_freeze_gamma"):
                self.update_weights = False
            if flags.get("_freeze_prior"):
                self.prior_net.requires_grad_(False)
        if changed and self.phase != phase:  # the start, the release
            trace.append([f"e{epoch}:{'start' if self.phase == 'hold' else 'release'}",
                          *probe(self, source)])
        return changed

    def after_training(self: Any, source: Any, idx: Any, s: int) -> None:
        self.update_weights = True
        state = copy.deepcopy(self.state_dict())

        def del_all() -> None:
            deletion.greedy_deletions = functools.partial(greedy, max_share=1.0)
            try:
                self.delete_components(source, idx, s)
            finally:
                deletion.greedy_deletions = greedy

        def merge_del() -> None:
            was, self.merge_moves = self.merge_moves, True
            post["merges"] = merge_components(self, source, idx, s, cg.DELETE_CELLS)
            self.merge_moves = was
            self.delete_components(source, idx, s)

        moves = {"kept": lambda: None, "del": lambda: self.delete_components(source, idx, s),
                 "del_all": del_all, "merge_del": merge_del}
        for name in VARIANTS:
            self.load_state_dict(state)
            moves[name]()
            post[name] = {"mean": probe(self, source), "pred": probe(self, source, True)}
        self.load_state_dict(state)
        after(self, source, idx, s)

    CGMVAEModule.before_epoch, CGMVAEModule.after_training = before_epoch, after_training
    from geovae.modules import mixture_start

    inits = mixture_start.START_INITS
    mixture_start.START_INITS = int(flags.get("_start_inits", inits))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geovae.fit(adata, model="cgmvae", model_options={"n_clusters": k, **opts},
                       seed=seed, epochs=epochs or None, progress=False, device="cpu",
                       heldout_samples=0, batch_key="condition", **kw)
    finally:
        CGMVAEModule.before_epoch, CGMVAEModule.after_training = before, after
        mixture_start.START_INITS = inits
    pred = adata.obsm["geovae_cluster_probs"].argmax(1)
    final = [round(adjusted_rand_score(labels, pred), 3), n_used(pred),
             int(adata.uns["geovae"]["n_components_used"])]
    info = adata.uns["geovae"]
    best = int(info["best_epoch"])  # 1-based: the kept weights' epoch and validation -ELBO
    return {"data": data, "seed": seed, "k": k, "opts": {**opts, **flags}, "epochs": epochs,
            "trace": trace, "post": post, "final": final, "best_epoch": best,
            "epochs_run": len(info["loss_history"]["validation"]),
            "val_best": float(info["loss_history"]["validation"][best - 1])}


#: what each post-hoc variant adds to a fit's own options in the summary's row names
MOVE_NAMES = {"del": "", "merge_del": " + merge", "del_all": " + del_all"}
#: the two-stage baseline's records (bench_clusters.py, same data and seeds)
BGMM_RECORDS = Path(__file__).resolve().parent / "results" / "clusters_2026-12-06.jsonl"


def label(opts: dict[str, Any]) -> str:
    """A fit's options as a row name ("default" for none)."""
    names = {"_freeze_gamma": "hold_weights", "hold_weights": "hold_weights",
             "new_default": "held weights + merges (the new defaults)"}
    parts = [names.get(k, f"{k}={v}") for k, v in sorted(opts.items())
             if k != "merge_moves"]
    return " + ".join(parts) or "default"


def rows_of(rec: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """(ARI, components in use) of each row a traced fit stands for: its options with each
    post-hoc move (predictive readout, what ``geovae_cluster_probs`` would hold), and its
    options with the posterior-mean readout."""
    base = label(rec["opts"])
    if rec["opts"].get("new_default"):  # the fit ran its own merges: its output is the row
        return {base: tuple(rec["final"][:2])}
    post = rec["post"]  # records of the first harness hold "del" only (the fit's own output)
    out = {base + extra: tuple(post[key]["pred"][:2]) for key, extra in MOVE_NAMES.items()
           if key in post}
    if "mean" in post["del"]:
        out[base + " (mean readout)"] = tuple(post["del"]["mean"][:2])
    return out


def summarise(paths: list[Path], truth: int = 5) -> None:
    """Per (data, K): each row's mean ARI and components in use, how often within ±1 of the
    truth, and paired tests (by seed) of ARI against the default and against VAE + BGMM."""
    from paired_stats import mean_sd, paired, table

    recs = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line]
    cells: dict[tuple[str, int], dict[str, dict[int, tuple[float, int]]]] = {}
    for r in recs:
        for name, value in rows_of(r).items():
            cells.setdefault((r["data"], r["k"]), {}).setdefault(name, {})[r["seed"]] = value
    if BGMM_RECORDS.exists():
        for line in BGMM_RECORDS.read_text().splitlines():
            b = json.loads(line)
            if b["method"] == "vae_bgmm" and (b["data"], b["k"]) in cells:
                cells[b["data"], b["k"]].setdefault("VAE + BGMM", {})[b["seed"]] = (
                    b["ari"], b["n_used"])
    tests = []
    for (data, k), named in cells.items():
        print(f"\n#### {data}, K = {k}\n\n| row | n | ARI | in use | within ±1 |")
        print("|---|---|---|---|---|")
        for name, by_seed in named.items():
            ari = [v[0] for v in by_seed.values()]
            used = [v[1] for v in by_seed.values()]
            hits = sum(abs(u - truth) <= 1 for u in used)
            print(f"| {name} | {len(ari)} | {mean_sd(ari, 2)} | {mean_sd(used, 1)} | "
                  f"{hits} of {len(used)} |")
        for ref in ("default", "VAE + BGMM"):
            for name, by_seed in named.items():
                if name == ref or ref not in named or (name, ref) == ("VAE + BGMM", "default"):
                    continue
                seeds = sorted(set(by_seed) & set(named[ref]))
                if len(seeds) >= 2:
                    tests.append((f"{data} K={k}: ARI", name, ref, paired(
                        [by_seed[s][0] for s in seeds], [named[ref][s][0] for s in seeds])))
                if len(seeds) >= 2 and ref == "default":  # |components in use - truth|
                    tests.append((f"{data} K={k}: |in use - {truth}|", name, ref, paired(
                        [abs(by_seed[s][1] - truth) for s in seeds],
                        [abs(named[ref][s][1] - truth) for s in seeds])))
    print()
    print("\n".join(table(tests)))


def main() -> None:
    if sys.argv[1:2] == ["--summary"]:
        summarise([Path(p) for p in sys.argv[2:]])
        return
    data, seed, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    print(json.dumps(fit(data, seed, k, opts)), flush=True)


if __name__ == "__main__":
    main()
