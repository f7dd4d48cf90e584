"""Training on several processes (DistributedDataParallel, gloo on the CPU) gives the model
one process gives, and only rank 0 writes.

What is equivalent: with ``--batch-size`` the global minibatch cut into one contiguous slice
per rank, DDP's averaged gradient is the gradient of the global minibatch's mean loss. The
random draws (latent samples, dropout) are per rank (rank r seeds ``seed + r``), so a plain
single-process run draws other noise and ends elsewhere (by about the sampling noise of
SGD). The reference is therefore one process that computes the same ranks one after the other
in the same order, each with its own RNG stream, averages their gradients and steps: written
here from the definition (slicing, RNG streams, all-reduced validation, early stopping), not
with the code under test. DDP must match it up to float rounding of the gradient average
(tolerance 1e-4 on the latent, 1e-5 relative on the losses; measured: 0 and 2e-6). Against a
plain single-process run the final validation loss must agree within 1%.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from torch import nn

from geovae.training.distributed import Ranks
from geovae.training.parts import (
    TEST_FRACTION,
    EarlyStopping,
    KLWarmup,
    make_optimizer,
    split_indices,
)
from geovae.training.trainer import TrainSettings, ahead_generator, evaluate_sum

WORKER = Path(__file__).with_name("ddp_worker.py")
_spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)
WORLD, EPOCHS, BATCH, N_CELLS = worker.WORLD, worker.EPOCHS, worker.BATCH, worker.N_CELLS
_model, _data = worker.model, worker.data


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _reference() -> dict:
    """WORLD ranks computed one after the other in this process (see the module docstring)."""
    m = _model()
    module, source = m.module, m.source()
    s = TrainSettings(epochs=EPOCHS, batch_size=BATCH, progress=False)
    gen = torch.Generator().manual_seed(s.seed)
    streams, aheads = [], [ahead_generator(s.seed, r) for r in range(WORLD)]
    for r in range(WORLD):
        torch.manual_seed(s.seed + r)
        streams.append(torch.get_rng_state())
    # GeoVAE.train keeps the 5% test split out first
    train_idx, val_idx, _ = split_indices(source.n_obs, s.validation_fraction, gen,
                                          TEST_FRACTION)
    local = BATCH // WORLD
    steps = len(train_idx) // BATCH
    warmup = KLWarmup.for_run(EPOCHS * steps, s.warmup_fraction)
    stopper = EarlyStopping(s.patience, math.ceil(warmup.warmup_steps / steps) - 1)
    optimizer = make_optimizer(module, s.lr, s.weight_decay)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    step, train, val = 0, [], []
    for epoch in range(EPOCHS):
        module.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for i in range(steps):
            block = perm[i * BATCH:(i + 1) * BATCH]
            grads = [torch.zeros_like(p) for p in params]
            for r in range(WORLD):
                torch.set_rng_state(streams[r])
                batch = module.draw_ahead(module.prepare(source.take(
                    block[r * local:(r + 1) * local])), aheads[r])
                out = module.loss(batch, kl_weight=warmup(step))
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                streams[r] = torch.get_rng_state()
                for g, p in zip(grads, params, strict=True):
                    g += p.grad
                total += float(out.loss.detach())
            for g, p in zip(grads, params, strict=True):
                p.grad = g / WORLD
            nn.utils.clip_grad_norm_(params, s.clip_norm)
            optimizer.step()
            step += 1
        train.append(total / (steps * WORLD))
        parts = torch.tensor_split(val_idx, WORLD)
        val.append(sum(float(evaluate_sum(module, source, part, BATCH, r))
                       for r, part in enumerate(parts)) / len(val_idx))
        if stopper.update(epoch, val[-1], module):
            break
    stopper.restore(module)
    return {"latent": m.get_latent(), "train": train, "val": val, "best": stopper.best_epoch}


def test_shards_partition_every_global_batch() -> None:
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(1))
    for world, batch in [(2, 32), (3, 32), (4, 8)]:
        local = batch // world
        shards = [Ranks(r, world).shard(perm, batch) for r in range(world)]
        steps = len(perm) // (local * world)
        assert all(len(sh) == steps * local for sh in shards)
        for i in range(steps):
            got = torch.cat([sh[i * local:(i + 1) * local] for sh in shards])
            np.testing.assert_array_equal(got.numpy(),
                                          perm[i * local * world:(i + 1) * local * world])
    assert Ranks().shard(perm, 32) is perm
    with pytest.raises(Exception, match="smaller than the 4 processes"):
        Ranks(0, 4).local_batch(3)


def test_two_gloo_ranks_train_what_one_process_computes_rank_by_rank(tmp_path: Path) -> None:
    run = _torchrun("-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
                    str(WORKER), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    # DDP kept the ranks' weights identical
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    ref = _reference()
    got = ranks[0]
    assert len(got["train"]) == len(ref["train"]) == EPOCHS
    np.testing.assert_allclose(got["train"], ref["train"], rtol=1e-5)
    np.testing.assert_allclose(got["val"], ref["val"], rtol=1e-5)
    assert int(got["best"]) == ref["best"]
    diff = np.abs(got["latent"] - ref["latent"]).max()
    assert diff < 1e-4, f"latent differs from the rank-by-rank reference by {diff}"
    # and it did train: the latent moved away from the untrained model's
    assert np.abs(got["latent"] - _model().get_latent()).max() > 1e-2
    # a plain single-process run draws other latent noise: same losses within 1% (measured:
    # 0.2% apart on the validation loss, latents up to 0.1 apart on a spread of 0.45)
    one = _model()
    hist = one.train(epochs=EPOCHS, batch_size=BATCH, device="cpu", progress=False)
    np.testing.assert_allclose(got["val"][-1], hist.validation[-1], rtol=0.01)


def test_ranks_keep_one_mixture_weight_posterior(tmp_path: Path) -> None:
    """The c*GMΔVAE updates gamma from each rank's minibatch outside the optimiser
    (`synced_state`): averaged after every step, every rank ends its last step with the same
    gamma (before the delete moves, which recompute it from all cells), and it moved."""
    run = _torchrun("-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
                    str(WORKER), str(tmp_path), "cgmvae")
    assert run.returncode == 0, run.stderr[-3000:]
    g0, g1 = (np.load(tmp_path / f"gamma{r}.npz")["gamma"] for r in range(WORLD))
    np.testing.assert_allclose(g0, g1, rtol=1e-6)
    assert np.ptp(g0) > 1.0  # trained: the weights are no longer uniform


def test_ranks_gamma_steps_average_to_the_one_process_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rank steps gamma from its slice of the global minibatch at the global batch's rate
    (`processes`); the ranks' mean (`synced_state`, `Ranks.average_`) is then the one-process
    step on the whole minibatch, not a step at half the rate."""
    import torch.distributed as dist

    from geovae.datasets import simulate_counts
    from geovae.models import CGMVAE

    a = simulate_counts(n_cells=60, n_genes=20, n_types=3, n_conditions=1, seed=0)
    module = CGMVAE(a, seed=0, n_hidden=8, model_options={"n_clusters": 4}).module
    module.n_obs.fill_(400.0)  # rate 64 / 400: inside the clamp
    pi = torch.softmax(torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), -1)
    start = module.gamma.clone()
    module._update_gamma(pi)
    one = module.gamma.clone()
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    steps = []
    for part in (pi[:32], pi[32:]):
        module.gamma.copy_(start)
        module._update_gamma(part)
        steps.append(module.gamma.clone())
    assert not torch.allclose(one, start)
    torch.testing.assert_close((steps[0] + steps[1]) / 2, one)


@pytest.mark.slow
def test_cli_devices_two_cpu_processes_write_once(tmp_path: Path) -> None:
    data = tmp_path / "d.h5ad"
    _data().write_h5ad(data)
    run = _torchrun("-m", "geovae", "fit", str(data), "--devices", "2", "--device", "cpu",
                    "--epochs", "2", "--no-umap", "--latent-dim", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.geovae.h5ad", "d.geovae.model", "d.h5ad"]
    # rank 0 alone reports (the other rank is quiet): one "read", one h5ad, one model
    assert run.stderr.count(" read ") == 1, run.stderr
    assert "training: 2 processes (rank 0 on cpu)" in run.stderr
    assert run.stderr.count("d.geovae.h5ad\n") == 1, run.stderr
    assert run.stderr.count(" wrote model to ") == 1, run.stderr
    out = ad.read_h5ad(tmp_path / "d.geovae.h5ad")
    assert out.obsm["X_geovae"].shape == (N_CELLS, 3)


def test_cli_devices_train_the_mixture_through_its_warm_start(tmp_path: Path) -> None:
    """The c*GMΔVAE's warm start leaves the mixture's parameters out of the pretraining loss:
    two processes must still average every step (DDP told to look for unused parameters)."""
    data = tmp_path / "d.h5ad"
    _data().write_h5ad(data)
    run = _torchrun("-m", "geovae", "fit", str(data), "--devices", "2", "--device", "cpu",
                    "--model", "cgmvae", "--n-clusters", "3", "--epochs", "4", "--no-umap",
                    "--latent-dim", "3")
    assert run.returncode == 0, run.stderr[-3000:]


def test_cli_devices_checks_before_starting_processes(tmp_path: Path) -> None:
    from helpers import run_cli

    res = run_cli("fit", tmp_path / "missing.h5ad", "--devices", "2", "--device", "cpu")
    assert res.exit_code == 2 and "missing.h5ad" in res.stderr
    res = run_cli("fit", tmp_path / "missing.h5ad", "--devices", "0")
    assert res.exit_code == 2 and "--devices must be at least 1" in res.stderr


def test_under_torchrun_only_fit_runs_and_only_rank_0_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import run_cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    res = run_cli("cluster", tmp_path / "x.h5ad", "--out", tmp_path / "y.h5ad")
    assert res.exit_code == 2 and "only `geovae fit` runs on several processes" in res.stderr
    res = run_cli("fit", tmp_path / "x.h5ad", "--devices", "2")
    assert res.exit_code == 2 and "under torchrun leave it out" in res.stderr
    res = run_cli("fit", tmp_path / "missing.h5ad")
    assert res.exit_code == 2 and "missing.h5ad" in res.stderr
    monkeypatch.setenv("RANK", "1")  # the same input error on another rank: exit 2, silent
    res = run_cli("fit", tmp_path / "missing.h5ad")
    assert res.exit_code == 2 and res.stderr == ""
