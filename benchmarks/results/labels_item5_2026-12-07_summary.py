"""Issue 24 item 5 check (2026-12-07): label transfer and calibration of the semi-supervised
c*GMΔVAE at main 23b7aa0 against the floor (bench_cgmvae.py, 2026-11-23, 3c71218, seeds 0-2).

Records (read here): ``label_transfer_2026-12-07.jsonl`` (bench_cgmvae.py --json, turned
into JSON lines, ``draws`` "fresh" for transfer seeds 110-114, "floor" for seeds 0-2: the
floor's own hidden-label draws and fit seeds) and ``calibration_pbmc_2026-12-07.jsonl``
(bench_calibration.py --weights scaled, seeds 120-124, 30 epochs); the floor's per-seed
accuracies are copied below from benchmarks/RESULTS.md at aff0b3b (its "per seed" table).
The transfer seed draws the hidden labels (``rng(seed).random(n) < f``) and seeds the fit;
the cells are the bundled ones in every run (pbmc68k 700 cells, digits 1,797 images).

Run from the repository root: ``python benchmarks/results/labels_item5_2026-12-07_summary.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from paired_stats import mean_sd, paired  # noqa: E402

CG, LR, NN = "cgmvae (label_key)", "logistic regression on 30 PCs", "15-NN on 30 PCs"
#: benchmarks/RESULTS.md at aff0b3b, per seed (seeds 0, 1, 2): (data, hidden, method) -> acc
FLOOR = {
    ("pbmc", 0.25, CG): (0.807, 0.806, 0.816), ("pbmc", 0.25, LR): (0.765, 0.770, 0.768),
    ("pbmc", 0.25, NN): (0.789, 0.794, 0.805), ("pbmc", 0.8, CG): (0.766, 0.788, 0.796),
    ("pbmc", 0.8, LR): (0.750, 0.756, 0.777), ("pbmc", 0.8, NN): (0.770, 0.716, 0.777),
    ("digits", 0.25, CG): (0.986, 0.977, 0.985), ("digits", 0.25, LR): (0.952, 0.959, 0.947),
    ("digits", 0.25, NN): (0.959, 0.939, 0.964), ("digits", 0.8, CG): (0.950, 0.962, 0.957),
    ("digits", 0.8, LR): (0.941, 0.937, 0.928), ("digits", 0.8, NN): (0.895, 0.902, 0.910),
}


def accs(recs: list[dict], draws: str, data: str, hidden: float, method: str) -> list[float]:
    rs = sorted((r for r in recs if r["draws"] == draws and r["data"] == data
                 and r["hidden"] == hidden and r["method"] == method), key=lambda r: r["seed"])
    return [r["acc"] for r in rs]


def fmt(p: float) -> str:
    return "n/a" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def transfer(recs: list[dict]) -> None:
    print("### Label transfer, accuracy on the hidden cells\n")
    print("| data | hidden | floor 3c71218 (seeds 0-2) | now, same draws 0-2 "
          "| paired Δ [95 % CI] (p) | now, fresh draws | Δ vs floor (Welch p) "
          "| LR 30 PCs fresh | 15-NN fresh "
          "| cgmvae − LR: floor / fresh (Welch p) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for data in ("pbmc", "digits"):
        for h in (0.25, 0.8):
            floor = list(FLOOR[data, h, CG])
            same = accs(recs, "floor", data, h, CG)
            fresh = accs(recs, "fresh", data, h, CG)
            lr, nn = accs(recs, "fresh", data, h, LR), accs(recs, "fresh", data, h, NN)
            pr = paired(same, floor) if len(same) == 3 else None
            half = stats.t.ppf(0.975, 2) * pr["sd"] / np.sqrt(3) if pr else np.nan
            pair = (f"{pr['diff']:+.3f} [{pr['diff'] - half:+.3f}, {pr['diff'] + half:+.3f}] "
                    f"({fmt(pr['p_t'])})") if pr else "not run"
            welch = stats.ttest_ind(fresh, floor, equal_var=False).pvalue
            m_floor = np.subtract(floor, FLOOR[data, h, LR])
            m_fresh = np.subtract(fresh, lr)
            pm = stats.ttest_ind(m_fresh, m_floor, equal_var=False).pvalue
            print(f"| {data} | {int(h * 100)} % | {mean_sd(floor)} | "
                  f"{mean_sd(same) if same else 'not run'} | {pair} | {mean_sd(fresh)} | "
                  f"{np.mean(fresh) - np.mean(floor):+.3f} ({fmt(welch)}) | {mean_sd(lr)} | "
                  f"{mean_sd(nn)} | {m_floor.mean():+.3f} / {m_fresh.mean():+.3f} ({fmt(pm)}) |")
    print("\nPer seed, cgmvae (label_key) [LR, 15-NN]:\n")
    for draws in ("floor", "fresh"):
        for data in ("pbmc", "digits"):
            for h in (0.25, 0.8):
                rows = [(r["seed"], r["acc"]) for r in recs if r["draws"] == draws
                        and r["data"] == data and r["hidden"] == h and r["method"] == CG]
                lr = accs(recs, draws, data, h, LR)
                nn = accs(recs, draws, data, h, NN)
                cells = ", ".join(f"s{s} {a:.3f} [{x:.3f}, {y:.3f}]"
                                  for (s, a), x, y in zip(sorted(rows), lr, nn, strict=True))
                if rows:
                    print(f"- {draws} draws, {data} {int(h * 100)} %: {cells}")
    for data in ("pbmc", "digits"):  # the baselines are deterministic given the draw
        for h in (0.25, 0.8):
            for m in (LR, NN):
                got = accs(recs, "floor", data, h, m)
                if got and not np.allclose(got, FLOOR[data, h, m], atol=6e-4):
                    print(f"- note: {data} {h} {m} on the floor draws {got} != {FLOOR[data, h, m]}")


def calibration(runs: list[tuple[str, Path]]) -> None:
    print("\n### Calibration on pbmc68k, 80 % of the labels hidden\n")
    cols = ("hidden_ece_predictive", "hidden_ece_posterior_mean",
            "hidden_confidence_predictive", "hidden_accuracy_predictive",
            "hidden_accuracy_posterior_mean", "val_ece", "val_n_cells", "seconds")
    print("| run | weight | epochs | n | " + " | ".join(cols) + " |")
    print("|---|---|---|---|" + "---|" * len(cols))
    loaded = []
    for name, p in runs:
        rs = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
        loaded.append((name, rs))
        for w in dict.fromkeys(r["weight"] for r in rs):
            sub = [r for r in rs if r["weight"] == w]
            ep = "default" if not sub[0]["epochs"] else sub[0]["epochs"]
            print(f"| {name} | {w} | {ep} | {len(sub)} | "
                  + " | ".join(mean_sd([r.get(c, np.nan) for r in sub]) for c in cols) + " |")
    for name, rs in loaded[1:]:
        for w in dict.fromkeys(r["weight"] for r in rs):
            sub = sorted((r for r in rs if r["weight"] == w), key=lambda r: r["seed"])
            pr = paired([r["hidden_ece_predictive"] for r in sub],
                        [r["hidden_ece_posterior_mean"] for r in sub])
            print(f"\n{name}, {w}: predictive − posterior-mean ECE on the hidden cells, paired "
                  f"over seeds: {pr['diff']:+.3f} (p {fmt(pr['p_t'])}). Per seed:\n")
            for r in sub:
                print(f"- s{r['seed']}: ECE {r['hidden_ece_predictive']:.3f} (posterior mean "
                      f"{r['hidden_ece_posterior_mean']:.3f}), confidence "
                      f"{r['hidden_confidence_predictive']:.3f}, accuracy "
                      f"{r['hidden_accuracy_predictive']:.3f}, {r['n_label_categories']} label "
                      f"categories, validation ECE {r.get('val_ece', float('nan')):.3f} on "
                      f"{r.get('val_n_cells')} cells, "
                      f"{r.get('epochs_run') or r['epochs']} epochs run, {r['seconds']} s")


def main() -> None:
    recs = [json.loads(x) for x in (HERE / "label_transfer_2026-12-07.jsonl").read_text()
            .splitlines() if x.strip()]
    transfer(recs)
    calibration([(name, HERE / f"calibration_pbmc_{tag}.jsonl") for name, tag in (
        ("2026-11-25, seeds 100-104", "2026-11-25"), ("2026-12-07, seeds 120-124", "2026-12-07"),
        ("2026-12-07, seeds 120-124", "default_epochs_2026-12-07"))
        if (HERE / f"calibration_pbmc_{tag}.jsonl").exists()])


if __name__ == "__main__":
    main()
