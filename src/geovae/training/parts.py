"""The parts a `Trainer` is made of; each can be replaced on its own (frozen weights for
transfer replace the optimiser's parameter set, DDP replaces the split and the progress)."""

from __future__ import annotations

import contextlib
import copy
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from geovae.errors import OptionError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU is a clear error. Under
    torchrun, ``auto``/``cuda`` is this rank's GPU (`distributed.local_device`)."""
    from geovae.training.distributed import local_device

    device = device.lower()
    if device == "auto":
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError("{opt} cuda was requested but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False): use cpu or auto",
                              param="device")
        return local_device(torch.device(device))
    if device == "cpu":
        return torch.device("cpu")
    raise OptionError(f"unknown {{opt}} '{device}': use auto, cpu or cuda", param="device")


def default_epochs(n_cells: int) -> int:
    """More epochs for small data, fewer for large (as scvi-tools users expect)."""
    return int(np.clip(round(20000 / max(n_cells, 1) * 400), 20, 400))


#: the test split `GeoVAE.train` keeps by default: this share of the cells, at most
#: `TEST_CELLS` of them; neither the training steps nor early stopping ever see them
TEST_FRACTION = 0.05
TEST_CELLS = 2000
#: below this many cells there is no validation or test split (every cell trains)
MIN_SPLIT_CELLS = 50


def split_indices(n: int, fraction: float, generator: torch.Generator,
                  test_fraction: float = 0.0, test_cells: int = TEST_CELLS
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (train, validation, test) split of ``n`` cells from one permutation drawn with
    ``generator``: the first min(round(n * test_fraction), test_cells) cells of it are the
    test split, the next round(n * fraction) the validation split, the rest train. No
    validation or test cells for tiny data (< `MIN_SPLIT_CELLS` cells)."""
    perm = torch.randperm(n, generator=generator)
    if n < MIN_SPLIT_CELLS:
        return perm, perm[:0], perm[:0]
    n_test = min(int(round(n * test_fraction)), max(int(test_cells), 0))
    n_val = int(round(n * fraction))
    return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]


def kl_weight(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up from ~0 to exactly 1 at ``warmup_steps`` (then constant)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


@dataclass
class KLWarmup:
    """KL weight by step; the warm-up always ends before training does, so the final model
    optimises the true ELBO."""

    warmup_steps: int

    @classmethod
    def for_run(cls, total_steps: int, fraction: float) -> KLWarmup:
        return cls(int(fraction * total_steps))

    def __call__(self, step: int) -> float:
        return kl_weight(step, self.warmup_steps)


class EarlyStopping:
    """Keep the weights of the best validation epoch (from ``start_epoch`` on); stop after
    ``patience`` epochs without a relative improvement of ``min_delta``."""

    def __init__(self, patience: int, start_epoch: int, min_delta: float = 1e-4):
        self.patience, self.start_epoch, self.min_delta = patience, start_epoch, min_delta
        self.best, self.best_epoch, self.since_best = math.inf, -1, 0
        self.best_state: dict | None = None

    def update(self, epoch: int, value: float, module: nn.Module) -> bool:
        """Record epoch ``epoch``'s validation ``value``; True when training should stop."""
        if epoch < self.start_epoch:
            return False
        scale = abs(self.best) if math.isfinite(self.best) else 1.0
        if value < self.best - self.min_delta * scale:
            self.best, self.best_epoch, self.since_best = value, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def make_optimizer(module: nn.Module, lr: float, weight_decay: float
                   ) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters only (frozen ones are left out).

    torch's fused implementation (one kernel per parameter instead of ~13 small ops) where
    every parameter is a floating tensor on a device it supports (CPU from torch 2.4, CUDA):
    the same update rule, and about 11% less time per epoch on the CPU (benchmarks/RESULTS.md,
    "Where one epoch's time goes"). Otherwise the for-loop implementation.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise OptionError("nothing to train: every parameter of the model is frozen")
    params = [p for _, p in named]
    scales = module.lr_scales() if hasattr(module, "lr_scales") else {}
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in named:  # one group per learning rate (`BaseModule.lr_scales`)
        scale = next((v for k, v in scales.items() if name.startswith(k + ".")), 1.0)
        groups.setdefault(lr * scale, []).append(p)
    spec = [{"params": ps, "lr": rate} for rate, ps in groups.items()]
    if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            return torch.optim.AdamW(spec, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # torch < 2.4 has no fused AdamW on the CPU
            pass
    return torch.optim.AdamW(spec, lr=lr, weight_decay=weight_decay)



def optimizer_stepper(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.step`` as a function of no arguments, the same numbers: for a fused AdamW
    on the CPU (`make_optimizer`) whose every parameter has a gradient and its state, torch's
    own two kernels (the step counters' increment, then ``_fused_adamw_`` on each group's
    lists) without ``Optimizer.step``'s per-call regrouping and checks (~0.13 ms a step on
    the CPU, 1-2 % of a default step). Any other case (a first step, a parameter without a
    gradient, another optimiser) goes through ``optimizer.step()``."""
    step = optimizer.step
    if not (isinstance(optimizer, torch.optim.AdamW) and hasattr(torch, "_fused_adamw_")
            and all(_plain_fused(g) for g in optimizer.param_groups)):
        return step
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 and not p.is_sparse
               for p in params):
        return step
    # per group: (params, their views for the kernel, exp_avgs, exp_avg_sqs, steps, group)
    lists: list = []

    def kernels() -> None:
        if not lists:
            states = [optimizer.state.get(p, {}) for p in params]
            if not all({"step", "exp_avg", "exp_avg_sq"} <= s.keys() for s in states):
                return step()  # the first step creates the state
            for g in optimizer.param_groups:
                st = [optimizer.state[p] for p in g["params"]]
                views = [_kernel_views(p, s["exp_avg"], s["exp_avg_sq"])
                         for p, s in zip(g["params"], st, strict=True)]
                lists.append((list(g["params"]), [v[0] for v in views],
                              [v[1] for v in views], [v[2] for v in views],
                              [s["step"] for s in st], g))
        grads = [p.grad for p in params]
        if any(gr is None or gr.is_sparse for gr in grads):
            return step()
        for ps, views, exp_avgs, exp_avg_sqs, steps, g in lists:
            if not ps:
                continue
            beta1, beta2 = g["betas"]
            torch._foreach_add_(steps, 1)
            # a gradient assigned by hand in another layout is copied into the view's; torch's
            # own kernel would pair the two layouts' memory wrongly (autograd keeps them equal)
            grads = [p.grad if v is p else p.grad.t().contiguous()
                     for p, v in zip(ps, views, strict=True)]
            torch._fused_adamw_(views, grads, exp_avgs, exp_avg_sqs, [], steps,
                                amsgrad=False, lr=g["lr"], beta1=beta1, beta2=beta2,
                                weight_decay=g["weight_decay"], eps=g["eps"],
                                maximize=False, grad_scale=None, found_inf=None)
        return None

    return kernels


def _kernel_views(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the fused kernel updates for ``param`` and its two moments: they themselves, or,
    for a matrix stored transposed (`geovae.nn.sparse_linear.feature_major`) with moments of
    its layout, their transposes, which are contiguous. The update is elementwise, so it is
    the same numbers; the kernel copies a non-contiguous tensor in and out each step (twice
    the time for that matrix, ~0.15 ms a step at 2,000 x 128)."""
    tensors = (param, exp_avg, exp_avg_sq)
    if param.dim() == 2 and not param.is_contiguous() and all(
            t.t().is_contiguous() and t.stride() == param.stride() for t in tensors):
        return param.detach().t(), exp_avg.t(), exp_avg_sq.t()
    return tensors


def _plain_fused(group: dict) -> bool:
    """A param group torch steps with ``_fused_adamw_`` and nothing else (float settings, no
    AMSGrad, maximise, capturable or differentiable step)."""
    return (group.get("fused") is True and not group.get("amsgrad")
            and not group.get("maximize") and not group.get("capturable")
            and not group.get("differentiable")
            and group.get("decoupled_weight_decay", True)
            and all(isinstance(group.get(k), float) for k in ("lr", "eps", "weight_decay"))
            and all(isinstance(b, float) for b in group.get("betas", (None,))))


T = TypeVar("T")


@contextlib.contextmanager
def core_for_builder(active: bool) -> Iterator[int]:
    """torch's intra-op threads one fewer (at least one) inside the block when ``active``
    (the CPU batch-building thread of `built_ahead` runs beside the steps), restored after;
    yields the count the steps use. Runnable threads then match the cores the user gave:
    torch's two-thread team on top of the builder oversubscribed 2 cores, and a second
    OpenMP thread does not pay for a small MLP's products on this kind of machine (one
    quiet machine, 20k x 2,000: 2.0-2.1 -> 1.2 s an epoch; benchmarks/bench_builder_threads.py,
    record results/builder_threads_2026-12-06.txt)."""
    before = torch.get_num_threads()
    n = max(1, before - 1) if active else before
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if n != before:
            torch.set_num_threads(before)


def built_ahead(items: Iterator[T], enabled: bool = True) -> Iterator[T]:
    """``items`` in the same order, each built on a background thread while the caller works
    on the one before (one ahead): on the CPU the second core gathers the next minibatch while
    the first trains. An exception raised while building is raised here, at the item it
    replaces; the thread ends when the caller stops iterating. ``enabled=False``: ``items``
    itself (built in the caller's thread, as before)."""
    if not enabled:
        yield from items
        return
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def offer(item: object) -> bool:  # False when the caller has gone
        while not stop.is_set():
            try:
                slot.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def build() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            offer(_Raised(exc))

    worker = threading.Thread(target=build, name="geovae-batches", daemon=True)
    worker.start()
    try:
        while (item := slot.get()) is not end:
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass
class _Raised:
    exc: BaseException


def gradient_clipper(params: list[torch.nn.Parameter], max_norm: float
                     ) -> Callable[[], None]:
    """``nn.utils.clip_grad_norm_(params, max_norm)`` as a function of no arguments, the same
    numbers: where every parameter is a dense tensor of one device and dtype, torch's own
    foreach steps (per-tensor norms, the norm of those, the clamped coefficient, one multiply)
    without its per-call grouping by device and dtype (~0.1 ms a step on the CPU)."""
    one_group = len({(p.device, p.dtype) for p in params}) == 1 and not any(
        p.is_sparse for p in params)
    if not one_group or not hasattr(torch, "_foreach_norm"):
        return lambda: nn.utils.clip_grad_norm_(params, max_norm)

    def clip() -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
            torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))

    return clip


class Progress:
    """A rich progress bar over epochs on stderr when it is a terminal; otherwise one summary
    line every ``log_every`` epochs. Silent when disabled (and on ranks other than 0)."""

    def __init__(self, enabled: bool, epochs: int, log_every: int = 25):
        import sys

        self.enabled, self.epochs, self.log_every = enabled, epochs, log_every
        self.live = enabled and sys.stderr.isatty()
        self.epoch = 0

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[msg]}"),
                                console=Console(stderr=True), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("epochs", total=self.epochs, msg="")
        return self

    def advance(self, msg: str) -> None:
        self.epoch += 1
        if self.live:
            self.bar.update(self.task, advance=1, msg=msg)
        elif self.enabled and (self.epoch % self.log_every == 0 or self.epoch == 1):
            import sys

            print(f"epoch {self.epoch}/{self.epochs}: {msg}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.bar.__exit__(*exc)
