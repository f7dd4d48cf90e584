"""Tables of clusters_lobes_effect_2026-12-07*.jsonl (records of the script beside this one):
per data set and K, each rule's ARI / NMI / components in use (mean ± sd; seeds within ±1 of
the 5 types) and paired tests (`paired_stats.paired`) of lobes - elbo, lobes - lobes_t and
lobes - demp; with ``--pairs`` the diagnostic of the pairs DEMP passes (> 0.1): each pair's
largest effects past the t guard, same type vs two types.
Run: python THIS.py REC.jsonl [REC.jsonl ...] [--pairs]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from paired_stats import mean_sd, paired  # noqa: E402

RULES = ("elbo", "demp", "lobes_t", "lobes")


def main() -> None:
    files = [a for a in sys.argv[1:] if not a.startswith("--")]
    recs = [json.loads(line) for f in files for line in Path(f).read_text().splitlines()
            if line.strip()]
    recs = list({(r["data"], r["k"], r["seed"]): r for r in recs}.values())
    for key in dict.fromkeys((r["data"], r["k"]) for r in recs):
        rs = sorted((r for r in recs if (r["data"], r["k"]) == key), key=lambda r: r["seed"])
        print(f"\n{key[0]} K={key[1]} seeds {[r['seed'] for r in rs]} "
              f"constants {rs[0]['constants']}")
        for rule in RULES:
            rows = [r["rules"][rule] for r in rs]
            hits = sum(abs(x["n_used"] - 5) <= 1 for x in rows)
            print(f"  {rule:8s} ARI {mean_sd([x['ari'] for x in rows])}  NMI "
                  f"{mean_sd([x['nmi'] for x in rows])}  in use "
                  f"{[x['n_used'] for x in rows]} ({hits}/{len(rows)} within ±1)  ARI "
                  f"{[x['ari'] for x in rows]}")
        for other in ("elbo", "lobes_t", "demp"):
            for metric in ("ari", "nmi"):
                p = paired([r["rules"]["lobes"][metric] for r in rs],
                           [r["rules"][other][metric] for r in rs])
                print(f"  lobes - {other} {metric}: {p['diff']:+.3f} ± {p['sd']:.3f} "
                      f"(n {p['n']}, p_t {p['p_t']:.3g}, p_w {p['p_w']:.3g})")
        if "--pairs" in sys.argv:
            for r in rs:
                for p in r["pairs"]:
                    if p[2] > 0.1:
                        print(f"    seed {r['seed']} pair {p[:2]} DEMP {p[2]} cells {p[3:5]} "
                              f"purity {p[5:7]} {'same' if p[7] else 'two'} top {p[8]}")
                grid = {k: v for k, v in r["rules"].items() if k.startswith("lobes ")}
                for k, v in grid.items():
                    print(f"    seed {r['seed']} {k}: {v['ari']} ({v['n_used']})")


if __name__ == "__main__":
    main()
