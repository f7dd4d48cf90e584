"""Summary of `..._eval.py` records: per data set and K, each seed's components in use and ARI
under the ``elbo`` and ``graph`` rules on the same fit, the seeds within ±1 of the 5 types,
paired t (graph - elbo) on ARI, NMI and components in use, and the graph rule's merges
(connectivity of each, same type or not) beside the most connected pair left.
Run: python THIS.py RECORDS.jsonl"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from paired_stats import fmt_p, paired  # noqa: E402

recs = [json.loads(x) for x in Path(sys.argv[1]).read_text().splitlines() if x.strip()]
recs = list({(r["data"], r["k"], r["seed"], r["rule"]): r for r in recs}.values())
print("| data | K | seeds | elbo: in use per seed; within ±1; ARI | graph: in use; within ±1; "
      "ARI | graph − elbo ARI (p) | NMI (p) | in use (p) |\n|---" + "|---" * 7 + "|")
for data, k in dict.fromkeys((r["data"], r["k"]) for r in recs):
    by = {rule: {r["seed"]: r for r in recs if (r["data"], r["k"], r["rule"]) == (data, k, rule)}
          for rule in ("elbo", "graph")}
    seeds = sorted(set(by["elbo"]) & set(by["graph"]))
    cells = []
    for rule in ("elbo", "graph"):
        rs = [by[rule][s] for s in seeds]
        ari = sum(r["ari"] for r in rs) / len(rs)
        cells.append(f"{', '.join(str(r['n_used']) for r in rs)}; "
                     f"{sum(abs(r['n_used'] - 5) <= 1 for r in rs)}/{len(rs)}; {ari:.3f}")
    tests = []
    for x in ("ari", "nmi", "n_used"):
        p = paired([by["graph"][s][x] for s in seeds], [by["elbo"][s][x] for s in seeds])
        tests.append(f"{p['diff']:+.3f} ({fmt_p(p['p_t'])})")
    print(f"| {data} | {k} | {seeds} | {cells[0]} | {cells[1]} | " + " | ".join(tests) + " |")
print("\n| data | K | seed | graph's merges: connectivity (same type?) | highest left (same "
      "type?) |\n|---|---|---|---|---|")
for r in recs:
    if r["rule"] != "graph":
        continue
    major = r["major"]

    def same(name: str, major: dict = major) -> str:
        parts = name.split("+")
        return "same" if len({major[p][0] for p in parts}) == 1 else "two types"
    seq = r["sequence"]
    n = len(r["gap"]["merged"])
    done = ", ".join(f"{c:.2f} ({same(m)})" for m, c in seq[:n]) or "none"
    left = f"{seq[n][1]:.3f} ({same(seq[n][0])})" if n < len(seq) else "-"
    print(f"| {r['data']} | {r['k']} | {r['seed']} | {done} | {left} |")
