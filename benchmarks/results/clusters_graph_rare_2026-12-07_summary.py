"""Summary of clusters_graph_rare_2026-12-07.py records: per set (data, K, ``set`` tag), each
seed's components in use, ARI, NMI and the rare type's best F1 (``*``: no cluster mostly of it
holds half its cells) per method, means, and paired t of every method against ``cgmvae_elbo``;
then the graph rule's merges. Run: python THIS.py RECORDS.jsonl"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from paired_stats import fmt_p, paired  # noqa: E402

recs = [json.loads(x) for x in Path(sys.argv[1]).read_text().splitlines() if x.strip()]
key = ("data", "k", "set", "method", "seed")
recs = list({tuple(r.get(x) for x in key): r for r in recs}.values())
METHODS = ("cgmvae_elbo", "cgmvae_graph", "cgmvae_graph_guard", "vae_leiden", "vae_bgmm")
for data, k, tag in dict.fromkeys((r["data"], r["k"], r.get("set")) for r in recs):
    rs = [r for r in recs if (r["data"], r["k"], r.get("set")) == (data, k, tag)]
    by = {m: {r["seed"]: r for r in rs if r["method"] == m} for m in METHODS}
    seeds = sorted(set().union(*by.values()))
    print(f"\n### {data}, K = {k}{f', {tag}' if tag else ''} (seeds {seeds})\n")
    rare = data.startswith("rare")  # elsewhere the smallest type is no rare type: no F1 columns
    print("| method | in use per seed | ARI per seed | mean ARI | NMI | "
          + ("rare F1 per seed | rare own | " if rare else "")
          + "vs elbo: ARI (p) | NMI (p) | in use (p) |" + (" rare F1 (p) |" if rare else ""))
    print("|---" * (11 if rare else 8) + "|")
    for m in METHODS:
        if not by[m]:
            continue
        s = [x for x in seeds if x in by[m]]
        r = [by[m][x] for x in s]
        cells = [", ".join(str(x["n_used"]) for x in r),
                 ", ".join(f"{x['ari']:.3f}" for x in r),
                 f"{sum(x['ari'] for x in r) / len(r):.3f}",
                 f"{sum(x['nmi'] for x in r) / len(r):.3f}",
                 ", ".join(f"{x['rare_f1']:.2f}{'' if x['rare_own'] else '*'}" for x in r),
                 f"{sum(x['rare_own'] for x in r)}/{len(r)}"]
        cells = cells if rare else cells[:4]
        common = [x for x in s if x in by["cgmvae_elbo"]]
        for v in ("ari", "nmi", "n_used", "rare_f1")[:4 if rare else 3]:
            if m == "cgmvae_elbo" or len(common) < 2:
                cells.append("")
                continue
            p = paired([by[m][x][v] for x in common], [by["cgmvae_elbo"][x][v] for x in common])
            cells.append(f"{p['diff']:+.3f} ({fmt_p(p['p_t'])})")
        print(f"| {m} | " + " | ".join(cells) + " |")
    for m in ("vae_leiden", "vae_bgmm"):  # the graph rule against each baseline
        common = sorted(set(by["cgmvae_graph"]) & set(by[m]))
        if len(common) >= 2:
            tests = [paired([by["cgmvae_graph"][x][v] for x in common],
                            [by[m][x][v] for x in common]) for v in ("ari", "nmi", "n_used")]
            print(f"\ncgmvae_graph - {m} (seeds {common}): ARI {tests[0]['diff']:+.3f} "
                  f"(p {fmt_p(tests[0]['p_t'])}), NMI {tests[1]['diff']:+.3f} "
                  f"(p {fmt_p(tests[1]['p_t'])}), in use {tests[2]['diff']:+.1f} "
                  f"(p {fmt_p(tests[2]['p_t'])})")
print("\n| data | K | set | seed | graph's merges: connectivity (same type?; smaller side's "
      "cells) | highest left |\n|---|---|---|---|---|---|")
for r in recs:
    if r["method"] not in ("cgmvae_graph", "cgmvae_graph_guard") or "sequence" not in r:
        continue
    major = r["major"]

    def same(name: str, major: dict = major) -> str:
        return "same" if len({major[p][0] for p in name.split("+")}) == 1 else "two types"

    current = set(major)
    smaller = []
    for m, _ in r["sequence"]:  # each merge's two sides: two clusters current before it
        parts = m.split("+")
        cut = next(i for i in range(1, len(parts)) if "+".join(parts[:i]) in current
                   and "+".join(parts[i:]) in current)
        sides = ["+".join(parts[:cut]), "+".join(parts[cut:])]
        smaller.append(min(sum(major[p][2] for p in x.split("+")) for x in sides))
        current = (current - set(sides)) | {m}
    seq, n = r["sequence"], len(r["gap"]["merged"])
    done = ", ".join(f"{c:.2f} ({same(m)}; {smaller[i]})"
                     for i, (m, c) in enumerate(seq[:n])) or "none"
    left = f"{seq[n][1]:.3f} ({same(seq[n][0])})" if n < len(seq) else "-"
    print(f"| {r['data']} | {r['k']} | {r.get('set') or ''} | {r['seed']} | {done} | {left} |")
