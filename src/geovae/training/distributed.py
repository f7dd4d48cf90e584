"""Several processes training one model: `torch.nn.parallel.DistributedDataParallel` under
torchrun (`torch.distributed.run`), one process per GPU (nccl) or per CPU share (gloo), on
one node or many. No process management of our own: torchrun starts the ranks and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous; `launch`
only calls torchrun's own entry point for ``geovae fit --devices N``.

What makes N ranks train the same model as one process does:

- ``--batch-size`` is the *global* minibatch. Every rank draws the same shuffled order of the
  training cells (the run's seed), cuts it into the same global batches, and takes its own
  contiguous ``batch_size // N`` cells of each (`Ranks.shard`): the ranks' batches partition
  the global batch. Each rank's loss is the mean over its cells and DDP averages the
  gradients, so the update is the single-process one up to float rounding (and to the
  random draws of the latent samples and dropout, which are per rank).
- The validation split is the same on every rank; each evaluates a slice and the sums are
  all-reduced, as are the epoch's loss sums: every rank sees the same numbers, so early
  stopping and the divergence check decide the same on all ranks (none waits alone in a
  collective).
- Only rank 0 reports progress and, after training, computes latents, neighbours and UMAP and
  writes files (`is_main`): inference on one process avoids gathering millions of rows through
  the process group, and the other ranks are released as soon as the weights are final.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from geovae.errors import OptionError

log = logging.getLogger("geovae.training")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """Processes in this run: the process group's size, else torchrun's ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank: the process group's, else torchrun's ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def is_main() -> bool:
    """True on rank 0 (and in any single-process run): the one process that writes."""
    return rank() == 0


def launched() -> bool:
    """True inside a run of several processes (torchrun, or a process group set up by the
    caller)."""
    return world_size() > 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, ``cuda`` (no index) is this rank's GPU, ``cuda:LOCAL_RANK``; an explicit
    ``cuda:N`` and ``cpu`` are kept."""
    if device.type != "cuda" or device.index is not None or not launched():
        return device
    n_local = _env_int("LOCAL_WORLD_SIZE", 1)
    n_gpus = torch.cuda.device_count()
    if n_local > n_gpus:
        raise OptionError(f"{n_local} processes on this node but {n_gpus} visible GPU(s): start "
                          f"at most {n_gpus} per node (torchrun's --nproc-per-node, or "
                          "{devices}), or train on the CPU with {device='cpu'}")
    return torch.device("cuda", _env_int("LOCAL_RANK", 0))


@dataclass
class Ranks:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Cells per rank of a global minibatch of ``batch_size``."""
        if batch_size < self.world:
            raise OptionError(f"{{opt}} {batch_size} is smaller than the {self.world} "
                              "processes: each needs at least one cell of every minibatch",
                              param="batch_size")
        if batch_size % self.world and self.main:
            log.warning(f"minibatch of {batch_size} cells over {self.world} processes: "
                        f"{batch_size // self.world} cells each, "
                        f"{batch_size // self.world * self.world} in all")
        return batch_size // self.world

    def shard(self, perm: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This rank's cells of each full global minibatch of ``perm`` (the ragged end
        dropped), in order: with ``local = batch_size // world`` and G = world * local, rank r
        takes positions [r * local, (r + 1) * local) of every block of G. One process: ``perm``
        itself."""
        if self.world == 1:
            return perm
        local = self.local_batch(batch_size)
        size = local * self.world
        steps = len(perm) // size
        return perm[:steps * size].view(steps, self.world, local)[:, self.rank].reshape(-1)

    def part(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of ``idx`` (for sums that are all-reduced)."""
        if self.world == 1:
            return idx
        return torch.tensor_split(idx, self.world)[self.rank]

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks, in place (one collective; a no-op on one process)."""
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Each of ``tensors`` replaced, in place, by its mean over the ranks (a no-op on one
        process)."""
        if self.world > 1:
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(self.world)

    def loss_fn(self, module: nn.Module, probe: Callable[[], object]
                ) -> Callable[[object, float], object]:
        """``module.loss`` on one process; through a DDP wrapper otherwise (gradients are
        averaged over the ranks during backward). ``probe()`` returns a first batch: one
        forward/backward on it (global RNG forked, gradients cleared after) finds parameters
        the loss does not use, and only then does DDP search for unused parameters each step."""
        if self.world == 1:
            return module.loss
        unused = torch.tensor([float(_has_unused(module, probe()))])
        if dist.get_backend() == "nccl":
            unused = unused.to(next(module.parameters()).device)
        self.all_sum(unused)
        ddp = nn.parallel.DistributedDataParallel
        # geovae's buffers are constants: no broadcast before every forward (the flag was
        # renamed in torch 2.13)
        new = "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        sync = {"forward_sync_buffers" if new else "broadcast_buffers": False}
        # a module with phases (the c*GMΔVAE's warm start) leaves other parameters out later
        phases = bool(module.has_phases())
        return ddp(_LossOf(module), find_unused_parameters=phases or bool(unused.item() > 0),
                   **sync)


class _LossOf(nn.Module):
    """``module.loss`` as ``forward``: DDP hooks gradient averaging into ``forward``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, batch: object, kl_weight: float) -> object:
        return self.module.loss(batch, kl_weight=kl_weight)


def _has_unused(module: nn.Module, batch: object) -> bool:
    params = [p for p in module.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    devices = [p.device for p in params[:1] if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        for p in params:
            p.grad = None
        module.loss(batch, kl_weight=1.0).loss.backward()
        unused = any(p.grad is None for p in params)
    for p, g in zip(params, saved, strict=True):
        p.grad = g
    return unused


@contextmanager
def session(device: torch.device) -> Iterator[Ranks]:
    """This process's `Ranks` for one training run. Under torchrun without a process group
    yet, create one (nccl on CUDA, gloo on CPU) and destroy it when training ends; a group
    the caller created is used and left alone."""
    if not dist.is_available() or world_size() == 1:
        yield Ranks()
        return
    created = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    backend = dist.get_backend()
    if (backend == "nccl") != (device.type == "cuda"):
        raise OptionError(f"the process group uses {backend} but the data are on {device}: "
                          "use nccl with CUDA devices and gloo with the CPU")
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size())
    finally:
        if created:
            dist.destroy_process_group()


def launch(n_processes: int, args: list[str]) -> int:
    """``geovae ARGS`` on ``n_processes`` ranks of this node through torchrun's own launcher
    (``torchrun --standalone --nproc-per-node N -m geovae ARGS``); returns the exit code:
    0, or that of the first rank that failed."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if "OMP_NUM_THREADS" not in os.environ:  # share this process's CPUs among the ranks
        from geovae._threads import available_cpus

        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cpus() // n_processes))
    # the ranks report their own errors in one line each; torchrun's report would repeat them
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    parsed = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={n_processes}", "--module", "geovae", *args])
    try:
        run(parsed)
    except ChildFailedError as exc:
        rank_, first = exc.get_first_failure()  # the root cause; torchrun stopped the others
        if first.exitcode > 0:
            return first.exitcode
        log.error(f"rank {rank_} was killed by {first.signal_name()} (out of memory?); "
                  "torchrun stopped the other ranks")
        return 1
    except SignalException:  # Ctrl-C / SIGTERM: torchrun stopped the ranks, which cleaned up
        return 130                # and said so
    return 0
