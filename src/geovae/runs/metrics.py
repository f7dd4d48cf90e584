"""``metrics_json``: one JSON file of a run's numbers for pipelines, with the same top-level
keys for every command (null where a command has no such number), plus the phase timings and
the label agreement the runs measure. The keys are documented in docs/metrics.md."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geovae import _keys as K

SCHEMA = "geovae-metrics/1"
#: the phases a run times, in order (``total`` is added); a phase a command lacks is null
PHASES = ("read", "train", "latent", "cluster_umap", "plot", "write")


class Timings:
    """Wall-clock seconds per phase of a run (``with timings.phase("read"): ...``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def as_dict(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {p: None for p in PHASES}
        out.update({k: round(v, 3) for k, v in self.seconds.items()})
        out["total"] = round(time.perf_counter() - self.start, 3)
        return out

    def summary(self) -> str:
        """``done in 12.3 s (read 0.1 s, train 10.2 s, ...)``."""
        parts = [f"{k.replace('_', '+')} {v:.1f} s" for k, v in self.seconds.items()]
        return f"done in {time.perf_counter() - self.start:.1f} s ({', '.join(parts)})"


def label_agreement(adata: Any, label_key: str | None) -> dict[str, Any] | None:
    """ARI and NMI of ``obs['geovae_cluster']`` against the labels on labelled cells, and the
    accuracy of ``obs['geovae_label']`` where the model predicts labels; None without labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from geovae.data.checks import category_strings, is_unlabelled

    if not label_key or label_key not in adata.obs or K.CLUSTER not in adata.obs:
        return None
    truth = adata.obs[label_key]
    known = ~is_unlabelled(truth)
    if known.sum() < 2:
        return None
    labels = category_strings(truth)[known]
    clusters = adata.obs[K.CLUSTER].astype(str).to_numpy()[known]
    out: dict[str, Any] = {
        "label_key": label_key, "n_cells": int(known.sum()),
        "n_labels": int(len(set(labels))), "n_clusters": int(len(set(clusters))),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
    }
    if K.LABEL in adata.obs:
        predicted = category_strings(adata.obs[K.LABEL])[known]
        out["accuracy"] = float(np.mean(predicted == labels))
    return out


def describe_agreement(info: dict[str, Any]) -> str:
    text = (f"clusters vs {info['label_key']}: ARI {info['ari']:.3f}, NMI {info['nmi']:.3f} "
            f"({info['n_clusters']} clusters, {info['n_labels']} labels, {info['n_cells']} "
            "labelled cells)")
    if "accuracy" in info:
        text += f"; predicted labels ({K.LABEL}) accuracy {info['accuracy']:.3f}"
    return text


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become numbers and lists, NaN/Inf null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _losses(history: Any) -> dict[str, Any] | None:
    if history is None or not history.train:
        return None
    return {"final": history.final(),
            "history": {"train": history.train, "validation": history.validation,
                        **history.terms},
            "best_epoch": int(history.best_epoch + 1), "epochs_run": len(history.train),
            "stopped_early": bool(history.stopped_early)}


def _clusters(adata: Any, info: dict[str, Any]) -> dict[str, Any] | None:
    if K.CLUSTER not in adata.obs:
        return None
    col = adata.obs[K.CLUSTER]
    counts = col.value_counts(sort=False)
    order = list(col.cat.categories) if hasattr(col, "cat") else sorted(counts.index)
    return {**info.get("cluster", {}), "sizes": {str(c): int(counts[c]) for c in order}}


def build(verb: str, adata: Any, *, command: str, input_path: Path, result: Any,
          timings: Timings, input_shape: tuple[int, int], input_format: str,
          history: Any = None, device: str | None = None,
          agreement: dict[str, Any] | None = None, umap: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """The metrics of one run (every top-level key present; null where not applicable)."""
    import torch

    from geovae.models.persistence import versions

    info = adata.uns.get(K.UNS, {})
    info = info if isinstance(info, dict) else {}
    transfer = info.get("transfer") if verb == "transfer" else None
    return jsonable({
        "schema": SCHEMA, "command": command, "verb": verb,
        "input": {"path": str(input_path), "format": input_format,
                  "n_cells": input_shape[0], "n_features": input_shape[1],
                  "n_missing_features": info.get("n_missing_features")
                  if verb in ("embed", "transfer") else None},
        "outputs": {"out": result.out, "plot": result.plot, "model_dir": result.model_dir,
                    "metrics_json": result.metrics},
        "model": info.get("model") if verb != "cluster" else None,
        "likelihood": info.get("likelihood") if verb != "cluster" else None,
        "latent": info.get("latent") if verb != "cluster" else None,
        "n_features_used": info.get("n_features") if verb != "cluster" else None,
        "losses": _losses(history),
        "heldout_loglik": info.get("heldout_loglik") if verb == "fit" else None,
        "clusters": _clusters(adata, info),
        "labels": agreement,
        "transfer": transfer,
        "umap": umap,
        "timings": timings.as_dict(),
        "device": device, "threads": torch.get_num_threads(),
        "versions": versions(),
        "notes": list(result.messages),
    })


def write_json(data: dict[str, Any], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
