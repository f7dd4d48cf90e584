"""Temperature scaling of a supervised mixture's label probabilities (Guo et al. 2017).

A fit with labels trains q(y|z) on its labelled training cells until it is over-confident on
cells it never saw (pbmc68k, 80 % of the labels hidden, default epochs: mean confidence 0.95
against accuracy 0.78). After training, one temperature T is fitted on the labelled cells of
the validation split (never the test split, on which ``uns['geovae']['calibration']``
reports) and every label probability becomes p^(1/T) renormalised: the logits log p divided
by T. T > 0 only rescales them, so the most probable label never changes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from geovae.errors import InputError

#: prior of the MAP fit, log T ~ N(0, PRIOR_SD^2): with few labelled validation cells (pbmc68k
#: at 20 % labels: ~14) T stays nearer 1 instead of following a handful of cells. On the
#: development split, seeds 100-104 of benchmarks/bench_calibration.py (80 % of the labels
#: hidden, default epochs), pbmc68k's hidden cells had ECE 0.161 at T = 1 and 0.104 / 0.053 /
#: 0.058 / 0.064 at PRIOR_SD 0.25 / 0.5 / 1 / unbounded; fitted on random subsets of 1-8 of a
#: seed's labelled validation cells, 0.5 never raised it (1: by up to 0.17). No minimum
#: number of cells: the prior is the fallback (benchmarks/RESULTS.md, "Label calibration";
#: benchmarks/results/calibration_temperature_2026-12-07_choose.py)
PRIOR_SD = 0.5
#: log T is searched in [LOG_T_MIN, LOG_T_MAX]: T >= 1, the fit only softens. A validation
#: set whose every cell is right pulls T below 1: on digits (same development split) that
#: raised the hidden cells' ECE by 0.004 (at most 0.006); with T >= 1 it is unchanged
LOG_T_MIN, LOG_T_MAX = 0.0, 3.0


@dataclass(frozen=True)
class LabelTemperature:
    """The temperature of a model's label probabilities and the number of labelled
    validation cells it was fitted on (0: not fitted, T = 1)."""

    value: float = 1.0
    n_cells: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.value, "n_cells": self.n_cells}

    @classmethod
    def from_saved(cls, saved: Any, path: str | os.PathLike) -> LabelTemperature:
        """From a model directory's ``config.json``; anything but a positive finite
        temperature and a cell count is an error naming the directory."""
        try:
            value, n_cells = saved["temperature"], saved["n_cells"]
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and value > 0 and isinstance(n_cells, int)
                  and not isinstance(n_cells, bool) and n_cells >= 0)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise InputError(f"model directory '{path}' is damaged: config.json: "
                             "'label_temperature' must hold a positive 'temperature' and a "
                             "cell count 'n_cells'; refit the model")
        return cls(float(value), n_cells)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Each row of ``probs`` to the power 1/``temperature``, renormalised (the logits log p
    divided by T; zeros stay zero); T = 1 returns ``probs`` itself."""
    if temperature == 1.0:
        return probs
    with np.errstate(divide="ignore"):
        logits = np.log(probs.astype(np.float64)) / temperature
    return softmax(logits, axis=1).astype(probs.dtype)


def nll(log_t: float, logp: np.ndarray, truth: np.ndarray) -> float:
    """Summed negative log-likelihood of ``truth`` under the rows of log-probabilities
    ``logp`` divided by exp(``log_t``)."""
    logq = log_softmax(logp / math.exp(log_t), axis=1)
    return float(-logq[np.arange(len(truth)), truth].sum())


def fit_temperature(probs: np.ndarray, truth: np.ndarray, prior_sd: float = PRIOR_SD
                    ) -> float:
    """The MAP temperature of the label probabilities ``probs`` (cells, labels) of cells
    whose true label codes are ``truth``: minimises the summed NLL of `temper`'s output plus
    (log T)^2 / (2 ``prior_sd``^2) (``prior_sd`` 0 or inf: T = 1 or the plain maximum
    likelihood fit); 1 without cells."""
    if not len(truth) or prior_sd == 0:
        return 1.0
    logp = np.log(np.clip(probs.astype(np.float64), 1e-30, None))
    penalty = 0.0 if math.isinf(prior_sd) else 0.5 / prior_sd ** 2
    res = minimize_scalar(lambda u: nll(u, logp, truth) + penalty * u * u,
                          bounds=(LOG_T_MIN, LOG_T_MAX), method="bounded",
                          options={"xatol": 1e-4})
    return float(math.exp(res.x))
