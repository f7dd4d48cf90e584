"""Training: minibatches from a `DataSource`, KL warm-up in steps, early stopping on a
held-out split with the best weights restored, gradient clipping.

`Trainer` is a loop over small parts (`geovae.training.parts`): the split, the KL warm-up, the
early stopping, the optimiser over trainable parameters and the progress report. Losses are
summed on the device and read once per epoch, so a GPU is not stalled every step. Under
torchrun the same loop runs on every rank (`geovae.training.distributed`): each takes its
slice of every global minibatch through DDP, and the epoch's sums are all-reduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from geovae._rng import seeded
from geovae.data.sources import DataSource
from geovae.errors import DivergedError, OptionError
from geovae.modules.base import BaseModule, Batch
from geovae.nn.layers import PRECISIONS, low_precision
from geovae.training import distributed
from geovae.training.parts import (
    TEST_CELLS,
    EarlyStopping,
    KLWarmup,
    Progress,
    built_ahead,
    core_for_builder,
    gradient_clipper,
    make_optimizer,
    optimizer_stepper,
    split_indices,
)


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
    #: the held-out cells early stopping watched (CPU, in the split's random order); None when
    #: not trained here (a loaded model)
    validation_indices: torch.Tensor | None = None
    #: the test cells (`TrainSettings.test_fraction`): neither trained on nor watched by early
    #: stopping; empty when there is no test split, None when not trained here
    test_indices: torch.Tensor | None = None
    #: the hidden layers' precision in the training steps ("32" or "bf16")
    precision: str = "32"

    def final(self) -> dict[str, float]:
        out = {"train_loss": self.train[-1] if self.train else float("nan")}
        if self.validation:
            best = self.best_epoch if self.best_epoch >= 0 else len(self.validation) - 1
            out["validation_loss"] = self.validation[best]
        for k, v in self.terms.items():
            out[k] = v[-1]
        return out


@dataclass
class TrainSettings:
    """Everything the loop needs besides the module and the data."""

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.1
    #: cells kept out of training and early stopping alike, for an unbiased held-out score
    #: (`split_indices`; `GeoVAE.train` sets `TEST_FRACTION`), at most ``test_cells`` of them
    test_fraction: float = 0.0
    test_cells: int = TEST_CELLS
    warmup_fraction: float = 0.25
    patience: int = 30
    clip_norm: float = 10.0
    weight_decay: float = 1e-6
    progress: bool = True
    #: hidden layers' matrix products in the training steps: "32" (float32), "bf16" (autocast
    #: to bfloat16; heads, likelihood and loss stay float32), "auto" (bf16 on a CUDA GPU of
    #: compute capability >= 8.0, else 32). Validation and inference always run in float32.
    precision: str = "auto"
    #: build each minibatch on a background thread while the step before trains: None = on
    #: the CPU when torch has two or more threads (one core gathers rows while the others
    #: train: the steps then use one torch thread fewer), off on a GPU (its gathers are queued
    #: kernels already)
    prefetch: bool | None = None
    #: ``torch.compile`` the training step's forward (opt-in: compiling takes seconds to tens of
    #: seconds up front and pays back only over many steps; benchmarks/RESULTS.md, "torch.compile")
    torch_compile: bool = False

    def check(self) -> None:
        if self.epochs < 1:
            raise OptionError("{opt} must be at least 1", param="epochs")
        if self.batch_size < 2:
            raise OptionError("{opt} must be at least 2", param="batch_size")
        if not 0 < self.lr < float("inf"):
            raise OptionError(f"{{opt}} must be a positive finite number, got {self.lr!r}",
                              param="lr")
        if not (0 <= self.test_fraction and 0 <= self.validation_fraction
                and self.test_fraction + self.validation_fraction < 1):
            raise OptionError("validation and test fractions must be >= 0 and leave cells to "
                              f"train on, got {self.validation_fraction} and "
                              f"{self.test_fraction}", param="test_fraction")
        if self.precision != "auto" and self.precision not in PRECISIONS:
            raise OptionError(f"unknown {{opt}} '{self.precision}': use auto, "
                              + ", ".join(PRECISIONS), param="precision")

    def resolved_precision(self, device: torch.device) -> str:
        """``precision`` with "auto" decided for ``device``."""
        if self.precision != "auto":
            return self.precision
        # native bf16 matrix products: compute capability 8.0 (Ampere) and later; older GPUs
        # would emulate bf16, slower than float32
        cuda_bf16 = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
        return "bf16" if cuda_bf16 else "32"

    def resolved_prefetch(self, device: torch.device) -> bool:
        """``prefetch`` with None decided for ``device`` and torch's thread count."""
        if self.prefetch is not None:
            return self.prefetch
        return device.type == "cpu" and torch.get_num_threads() >= 2


def ahead_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The generator of the steps' random numbers drawn ahead of them (`BaseModule.draw_ahead`;
    compiled steps draw their own): its own, so the batch-building thread never touches the
    global one the step uses; one stream per rank."""
    return torch.Generator().manual_seed(seed + 7933 + 1_000_003 * rank)


class Trainer:
    """Fits a `BaseModule`: ``loss(batch, kl_weight)`` returns a `LossOutput`; its
    ``after_training`` hook runs once on the kept weights."""

    def __init__(self, module: BaseModule, source: DataSource, settings: TrainSettings):
        settings.check()
        self.module, self.source, self.s = module, source, settings

    def fit(self) -> History:
        with distributed.session(self.source.device) as ranks:
            return self._fit(ranks)

    def _fit(self, ranks: distributed.Ranks) -> History:
        s, module, source = self.s, self.module, self.source
        device = source.device
        gen = torch.Generator().manual_seed(s.seed)
        torch.manual_seed(s.seed + ranks.rank)  # rank 0 draws what one process would
        train_idx, val_idx, test_idx = split_indices(source.n_obs, s.validation_fraction, gen,
                                                     s.test_fraction, s.test_cells)
        n_train = len(train_idx)
        batch_size = min(s.batch_size, n_train)
        local_batch = ranks.local_batch(batch_size)  # the global batch, split over the ranks
        batch_size = local_batch * ranks.world
        steps_per_epoch = max(1, n_train // batch_size)  # drop the ragged last batch
        hist = History(total_steps=s.epochs * steps_per_epoch,
                       validation_indices=val_idx.clone(), test_indices=test_idx.clone(),
                       precision=s.resolved_precision(device))
        warmup = KLWarmup.for_run(hist.total_steps, s.warmup_fraction)
        hist.warmup_steps = warmup.warmup_steps
        warmup_end = math.ceil(warmup.warmup_steps / steps_per_epoch) - 1
        stopper = EarlyStopping(s.patience, warmup_end)
        module.to(device)
        optimizer = make_optimizer(module, s.lr, s.weight_decay)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        clip_gradients = gradient_clipper(params, s.clip_norm)
        optimizer_step = optimizer_stepper(optimizer)
        val_idx = val_idx.to(device)
        my_val = ranks.part(val_idx)
        loss_fn = ranks.loss_fn(module, lambda: source.take(
            ranks.shard(train_idx, batch_size)[:local_batch].to(device)))
        if s.torch_compile:
            loss_fn = torch.compile(loss_fn)
        prefetch = s.resolved_prefetch(device)
        ahead = ahead_generator(s.seed, ranks.rank)

        def built(batch: Batch) -> Batch:
            batch = module.prepare(batch)
            return batch if s.torch_compile else module.draw_ahead(batch, ahead)

        step = 0
        # the builder thread takes one of the cores torch was given (`core_for_builder`)
        with Progress(s.progress and ranks.main, s.epochs) as progress, \
                core_for_builder(prefetch and device.type == "cpu"):
            for epoch in range(s.epochs):
                # a module's phases (`BaseModule.before_epoch`: the c*GMΔVAE's warm start);
                # True = a new objective from here on: early stopping starts again
                if module.before_epoch(epoch, s.epochs, source, train_idx.to(device),
                                       s.seed + 7907):
                    stopper = EarlyStopping(s.patience, max(epoch, warmup_end))
                module.train()
                perm = source.shuffle(train_idx, gen).to(device)
                sums: dict[str, torch.Tensor] = {}
                total = torch.zeros((), device=device)
                # the training steps' trunks in the run's precision; validation below in float32
                with low_precision(module, hist.precision):
                    batches = map(built, source.batches(
                        ranks.shard(perm, batch_size), local_batch, drop_last=True))
                    for batch in built_ahead(batches, prefetch):
                        out = loss_fn(batch, warmup(step))
                        for p in params:  # = optimizer.zero_grad(set_to_none=True)
                            p.grad = None
                        out.loss.backward()
                        clip_gradients()
                        optimizer_step()
                        if ranks.world > 1:  # the module's own updates (`synced_state`)
                            ranks.average_(module.synced_state())
                        step += 1
                        total += out.loss.detach()
                        for k, v in out.terms.items():
                            sums[k] = sums.get(k, 0.0) + v.detach().mean()
                # one vector of sums over the ranks, read once per epoch
                parts = [total, *sums.values()]
                if len(val_idx):
                    parts.append(evaluate_sum(module, source, my_val, batch_size, ranks.rank,
                                              prefetch))
                read = ranks.all_sum(torch.stack([p.double() for p in parts])).tolist()
                train_loss = read[0] / (steps_per_epoch * ranks.world)
                if not math.isfinite(train_loss):
                    raise DivergedError(
                        f"training diverged (non-finite loss) at epoch {epoch + 1}; "
                        "try a lower learning rate ({lr})")
                hist.train.append(train_loss)
                for k, v in zip(sums, read[1:], strict=False):
                    hist.terms.setdefault(k, []).append(v / (steps_per_epoch * ranks.world))
                msg = f"loss {train_loss:.4g}"
                if len(val_idx):
                    val = read[-1] / len(val_idx)
                    hist.validation.append(val)
                    msg += f"  val {val:.4g}"
                    if stopper.update(epoch, val, module):
                        # a module's next phase (`BaseModule.on_plateau`: the c*GMΔVAE's
                        # mixture after a converged pretraining) from the best weights so far
                        if module.on_plateau(epoch):
                            stopper.restore(module)
                            stopper = EarlyStopping(s.patience, epoch + 1)
                        else:
                            hist.stopped_early = True
                progress.advance(msg)
                if hist.stopped_early:
                    break
        stopper.restore(module)
        # a module's own last step on the kept weights (`BaseModule.after_training`: the
        # c*GMΔVAE's delete moves): seeded, the same on every rank
        module.after_training(source, train_idx.to(device), s.seed + 7919)
        hist.best_epoch = stopper.best_epoch
        module.eval()
        return hist


def evaluate(module: nn.Module, source: DataSource, idx: torch.Tensor, batch_size: int
             ) -> float:
    """Mean -ELBO (full KL weight) over ``idx``, in eval mode.

    Latent samples use a fixed seed (common random numbers), so the value is a deterministic
    function of the weights: epochs compare fairly, and the global RNG is left untouched.
    """
    return float(evaluate_sum(module, source, idx, batch_size)) / max(len(idx), 1)


@torch.no_grad()
def evaluate_sum(module: nn.Module, source: DataSource, idx: torch.Tensor, batch_size: int,
                 seed: int = 0, prefetch: bool = False) -> torch.Tensor:
    """Summed -ELBO over ``idx`` as a float64 tensor on the device (not read back), with the
    latent samples drawn from ``seed`` (see `evaluate`); ``prefetch``: batches built (and
    `BaseModule.prepare`d) on a background thread, as in training."""
    was_training = module.training
    module.eval()
    total = torch.zeros((), device=source.device, dtype=torch.float64)
    batches = source.batches(idx, eval_batch_size(batch_size, getattr(module, "n_features", 0)))
    ahead = prefetch and isinstance(module, BaseModule)
    try:
        with seeded(seed, source.device):
            # the loop holds the only reference to `built_ahead`'s generator: an error in a
            # step closes it (and ends its thread) at once, even where the traceback is kept
            for batch in built_ahead(map(module.prepare, batches) if ahead else batches, ahead):
                total += module.loss(batch, kl_weight=1.0).negative_elbo.sum()
    finally:  # an error in a step leaves the module in the mode it came in
        module.train(was_training)
    return total


#: a validation batch's (cells x features) blocks hold at most this many entries (8 MB each)
EVAL_BLOCK_ENTRIES = 2**21


def eval_batch_size(batch_size: int, n_features: int) -> int:
    """Cells a validation batch holds: at least ``batch_size`` and 256, up to 1,024 while its
    blocks stay within `EVAL_BLOCK_ENTRIES` (fewer, larger batches: the forward pass's small
    ops paid fewer times; 2,000 validation cells x 2,000 genes, 2 threads: 72 -> 50-55 ms)."""
    return max(batch_size, 256, min(1024, EVAL_BLOCK_ENTRIES // max(n_features, 1)))


def train_module(module: BaseModule, source: DataSource, **settings: object) -> History:
    """Shortcut: ``Trainer(module, source, TrainSettings(**settings)).fit()``."""
    return Trainer(module, source, TrainSettings(**settings)).fit()
