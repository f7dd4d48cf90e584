"""Training: data put on the device once, minibatches sliced from it, KL warm-up in steps,
early stopping on a held-out split with the best weights restored, gradient clipping."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from geovae.errors import OptionError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU is a clear error."""
    device = device.lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError("--device cuda was requested but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False): use --device cpu or auto")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise OptionError(f"unknown device '{device}': use auto, cpu or cuda")


class CellTensors:
    """A cell x feature matrix held on the device once (CSR parts or dense).

    ``rows(idx)`` densifies only the requested minibatch, with a vectorised gather: no
    per-cell Python loop and no host-to-device copy per step.
    """

    def __init__(self, X: np.ndarray | sp.spmatrix, batch: np.ndarray, labels: np.ndarray,
                 n_categories: list[int], device: torch.device):
        self.device = device
        self.n_obs, self.n_vars = X.shape
        self.sparse = sp.issparse(X)
        if self.sparse:
            X = sp.csr_matrix(X)
            self.indptr = torch.as_tensor(X.indptr.astype(np.int64), device=device)
            self.indices = torch.as_tensor(X.indices.astype(np.int64), device=device)
            self.data = torch.as_tensor(X.data.astype(np.float32), device=device)
        else:
            self.dense = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
        self.batch = torch.as_tensor(batch, dtype=torch.long, device=device)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.n_categories = n_categories

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Dense (len(idx), n_vars) float32 block of the requested rows."""
        if not self.sparse:
            return self.dense[idx]
        start, stop = self.indptr[idx], self.indptr[idx + 1]
        lengths = stop - start
        out = torch.zeros(len(idx), self.n_vars, device=self.device)
        total = int(lengths.sum())
        if total == 0:
            return out
        row_of = torch.repeat_interleave(torch.arange(len(idx), device=self.device), lengths)
        offsets = torch.cumsum(lengths, 0) - lengths
        pos = torch.arange(total, device=self.device) - offsets[row_of] + start[row_of]
        out[row_of, self.indices[pos]] = self.data[pos]
        return out

    def covariates(self, idx: torch.Tensor) -> torch.Tensor | None:
        """One-hot covariates of the requested rows, concatenated over covariate keys."""
        if not self.n_categories:
            return None
        blocks = [nn.functional.one_hot(self.batch[idx, k], n).float()
                  for k, n in enumerate(self.n_categories)]
        return torch.cat(blocks, dim=-1)


def kl_weight(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up from ~0 to exactly 1 at ``warmup_steps`` (then constant)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def default_epochs(n_cells: int) -> int:
    """More epochs for small data, fewer for large (as scvi-tools users expect)."""
    return int(np.clip(round(20000 / max(n_cells, 1) * 400), 20, 400))


@dataclass
class History:
    """Per-epoch mean losses, and where training stopped."""

    train: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    stopped_early: bool = False
    warmup_steps: int = 0
    total_steps: int = 0

    def final(self) -> dict[str, float]:
        out = {"train_loss": self.train[-1] if self.train else float("nan")}
        if self.validation:
            best = self.best_epoch if self.best_epoch >= 0 else len(self.validation) - 1
            out["validation_loss"] = self.validation[best]
        for k, v in self.terms.items():
            out[k] = v[-1]
        return out


def split_indices(n: int, fraction: float, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random train/validation split; no validation set for tiny data."""
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(n * fraction)) if n >= 50 else 0
    return perm[n_val:], perm[:n_val]


def train_module(
    module: nn.Module,
    data: CellTensors,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    validation_fraction: float = 0.1,
    warmup_fraction: float = 0.25,
    patience: int = 30,
    clip_norm: float = 10.0,
    weight_decay: float = 1e-6,
    progress: bool = True,
) -> History:
    """Fit ``module`` (returns a `LossOutput` from ``module(x, c, labels, kl_weight)``)."""
    if epochs < 1:
        raise OptionError("--epochs must be at least 1")
    if batch_size < 2:
        raise OptionError("--batch-size must be at least 2")
    if not lr > 0:
        raise OptionError("--lr must be positive")
    device = data.device
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train_idx, val_idx = split_indices(data.n_obs, validation_fraction, gen)
    n_train = len(train_idx)
    batch_size = min(batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch_size)  # drop the ragged last batch
    hist = History(total_steps=epochs * steps_per_epoch)
    # warm-up always ends before training does, so the final model optimises the true ELBO
    hist.warmup_steps = int(warmup_fraction * hist.total_steps)
    warmup_epochs = math.ceil(hist.warmup_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    best_state, best_val, since_best = None, math.inf, 0
    step = 0
    module.to(device)
    with _progress(progress, epochs) as bar:
        for epoch in range(epochs):
            module.train()
            perm = train_idx[torch.randperm(n_train, generator=gen)].to(device)
            sums: dict[str, float] = {}
            total = 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                out = module(data.rows(idx), data.covariates(idx), data.labels[idx],
                             kl_weight=kl_weight(step, hist.warmup_steps))
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
                optimizer.step()
                step += 1
                total += float(out.loss.detach())
                for k, v in out.terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach().mean())
            if not math.isfinite(total):
                raise FloatingPointError(
                    f"training diverged (non-finite loss) at epoch {epoch + 1}; "
                    "try a lower --lr")
            hist.train.append(total / steps_per_epoch)
            for k, v in sums.items():
                hist.terms.setdefault(k, []).append(v / steps_per_epoch)
            msg = f"loss {hist.train[-1]:.4g}"
            if len(val_idx):
                val = evaluate(module, data, val_idx.to(device), batch_size)
                hist.validation.append(val)
                msg += f"  val {val:.4g}"
                if epoch + 1 >= warmup_epochs:
                    if val < best_val - 1e-4 * abs(best_val if math.isfinite(best_val) else 1):
                        best_val, since_best, hist.best_epoch = val, 0, epoch
                        best_state = copy.deepcopy(module.state_dict())
                    else:
                        since_best += 1
            bar.advance(msg)
            if best_state is not None and since_best >= patience:
                hist.stopped_early = True
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return hist


@torch.no_grad()
def evaluate(module: nn.Module, data: CellTensors, idx: torch.Tensor, batch_size: int) -> float:
    """Mean -ELBO (full KL weight) over ``idx``, in eval mode.

    Latent samples use a fixed seed (common random numbers), so the value is a deterministic
    function of the weights: epochs compare fairly, and the global RNG is left untouched.
    """
    module.eval()
    total, n = 0.0, 0
    devices = [data.device] if data.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        for start in range(0, len(idx), max(batch_size, 256)):
            sub = idx[start:start + max(batch_size, 256)]
            out = module(data.rows(sub), data.covariates(sub), data.labels[sub], kl_weight=1.0)
            total += float((out.reconstruction + out.kl).sum())
            n += len(sub)
    module.train()
    return total / max(n, 1)


class _progress:
    """A rich progress bar over epochs, printed to stderr; silent when disabled."""

    def __init__(self, enabled: bool, epochs: int):
        self.enabled, self.epochs = enabled, epochs

    def __enter__(self) -> _progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.p = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TimeRemainingColumn(),
                              TextColumn("{task.fields[msg]}"),
                              console=Console(stderr=True), transient=False)
            self.p.__enter__()
            self.task = self.p.add_task("epochs", total=self.epochs, msg="")
        return self

    def advance(self, msg: str) -> None:
        if self.enabled:
            self.p.update(self.task, advance=1, msg=msg)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.p.__exit__(*exc)
