"""How the label temperature's settings were chosen (`geovae.models.calibration`: PRIOR_SD,
LOG_T_MIN), on the development split only: seeds 100-104 of bench_calibration.py, 80 % of the
labels hidden, default epochs, pbmc and digits, each fit's probabilities without T saved by
``--dump``::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_calibration.py --seeds 100 101 102 \\
        103 104 --weights scaled --epochs 0 --dump DUMP [--data digits]
    PYTHONPATH=src python benchmarks/results/calibration_temperature_2026-12-07_choose.py DUMP

Per prior sd and lower bound of T: T fitted on each fit's labelled validation cells (all of
them, and random subsets of 1, 3 and 8 of them, 20 draws each: fewer labelled cells), and the
change of the hidden cells' ECE against T = 1 (mean, and the largest rise).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

import geovae.models.calibration as cal
from geovae.models.cgmvae import expected_calibration_error as ece


def main(dump: Path) -> None:
    for data in ("pbmc", "digits"):
        files = sorted(dump.glob(f"{data}_*.npz"))
        for log_t_min in (-3.0, 0.0):
            cal.LOG_T_MIN = log_t_min
            for sd in (0.25, 0.5, 1.0, math.inf):
                full, subsets = [], {m: [] for m in (1, 3, 8)}
                for f in files:
                    d = np.load(f)
                    t, hidden, labelled = d["truth"], d["hidden"], d["labelled"]
                    p = d["predictive"][:, :int(t.max()) + 1]
                    p = p / p.sum(1, keepdims=True)
                    val = d["validation"][labelled[d["validation"]]]
                    hid = np.flatnonzero(hidden)
                    base = ece(p[hid], t[hid])

                    def change(cells: np.ndarray, p=p, t=t, hid=hid, base=base, sd=sd) -> float:
                        temp = cal.fit_temperature(p[cells], t[cells], prior_sd=sd)
                        return ece(cal.temper(p[hid], temp), t[hid]) - base

                    full.append(change(val))
                    rng = np.random.default_rng(0)
                    for m, out in subsets.items():
                        out.extend(change(rng.choice(val, m, replace=False)) for _ in range(20))
                print(f"{data}, T >= {math.exp(log_t_min):.2f}, prior sd {sd}: ECE change "
                      f"{np.mean(full):+.3f} (largest {np.max(full):+.3f}); subsets " +
                      ", ".join(f"{m} cells {np.mean(v):+.3f} (largest {np.max(v):+.3f})"
                                for m, v in subsets.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
