"""Issue 24, the checks before `graph` (with its vetoes) could become the default: K = truth
(issue-type K = 5), hard K = 5 and blobs K = 15, fresh fits, seeds 60-64 (they chose nothing).
Fits: clusters_graph_2026-12-07_dump.py DATA K SEED OUT.pt (default epochs); scores:
clusters_graph_realveto_2026-12-07.py eval OUT.jsonl report DUMP.pt --elbo --graph
--graph_expr (each rule on the same fit's kept weights). Run 2026-12-07 14:26-14:38 UTC, one fit
at a time, OMP_NUM_THREADS=1 nice -n 19 on 2 shared cores.
python THIS.py RECORDS.jsonl: markdown, per set the realveto script's table and paired tests,
then K = 5 against the K = 15 report fits of the same seeds
(clusters_graph_realveto_2026-12-07.jsonl): collapse = ARI more than 0.05 below K = 15's."""
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
_spec = importlib.util.spec_from_file_location("rv", HERE / "clusters_graph_realveto_2026-12-07.py")
rv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rv)
from paired_stats import paired  # noqa: E402

METHODS = ("elbo", "graph", "graph_expr")


def main(path: Path) -> None:
    rv.TRUTH.setdefault("blobs", 5)
    rv.summary(path)
    new = [r for r in map(json.loads, path.read_text().splitlines()) if "method" in r]
    old = [r for r in map(json.loads, (HERE / "clusters_graph_realveto_2026-12-07.jsonl")
                          .read_text().splitlines()) if "method" in r]
    key = {(r["data"], r["k"], r["seed"], r["method"]): r for r in old + new}
    for data in dict.fromkeys(r["data"] for r in new if r["k"] == 5):
        seeds = sorted({r["seed"] for r in new if r["data"] == data and r["k"] == 5
                        and all((data, 15, r["seed"], m) in key for m in METHODS)
                        and all((data, 5, r["seed"], m) in key for m in METHODS)})
        if not seeds:
            continue
        print(f"\n### {data}: K = 5 (truth) against K = 15, same seeds "
              f"({', '.join(map(str, seeds))})\n")
        print("| method | ARI K = 5 per seed | ARI K = 15 per seed | seeds > 0.05 below K = 15 "
              "| K = 5 - K = 15 (paired t) |")
        print("|---|---|---|---|---|")
        for m in METHODS:
            a = [key[(data, 5, s, m)]["ari"] for s in seeds]
            b = [key[(data, 15, s, m)]["ari"] for s in seeds]
            low = sum(x < y - 0.05 for x, y in zip(a, b, strict=True))
            p = paired(a, b) if len(seeds) >= 3 else {"diff": sum(a) / len(a) - sum(b) / len(b),
                                                      "p_t": float("nan")}
            print(f"| {m} | {', '.join(f'{x:.3f}' for x in a)} | "
                  f"{', '.join(f'{x:.3f}' for x in b)} | {low}/{len(seeds)} | "
                  f"{p['diff']:+.3f} (p {p['p_t']:.2g}) |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
