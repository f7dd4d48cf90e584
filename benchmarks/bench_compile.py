"""Does ``torch.compile`` pay for geovae's training step? Eager vs compiled, same data.

Run:  python benchmarks/bench_compile.py [--data PATH.h5ad] [--steps 100] [--threads 1]
          [--batch-key batch] [--simulate] [--modes eager compile compile-trunks compile-step]

Each mode runs in its own process (so compilation caches do not carry over): a Euclidean VAE
(NB likelihood, geovae's defaults) on ``--data``; 5 warm-up steps (which include the
compilation), then ``--steps`` timed steps of loss + backward + AdamW on random minibatches
of 128 cells. Modes:

- ``eager``: what geovae runs;
- ``compile``: ``torch.compile(module.loss)`` (the whole forward, likelihood included);
- ``compile-trunks``: ``torch.compile`` of the encoder and decoder MLPs only;
- ``compile-step``: ``compile`` plus ``torch.compile`` of the optimiser's step (its AdamW
  update fused with the rest of the compiled code's kernels).

``--simulate``: bench_vs_scvi.py's 20k x 2,000 counts (batch key ``batch``) instead of
``--data`` (the data the matmul floor of bench_floor.py is measured on).

Prints one line per mode: warm-up seconds, ms per step, the graphs dynamo compiled and the
graph breaks it counted, and the mean loss of the timed steps (the same model and data, so the
losses should agree).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: the modes (module docstring)
MODES = ("eager", "compile", "compile-trunks", "compile-step")


def worker(args: argparse.Namespace) -> dict:
    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    import torch._dynamo

    from geovae.models import GeoVAE
    from geovae.training.parts import make_optimizer

    if args.simulate:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import vs_scvi_counts

        adata, args.batch_key = vs_scvi_counts(), "batch"
    else:
        adata = ad.read_h5ad(args.data)
    model = GeoVAE(adata, batch_key=args.batch_key, latent_dim=10, seed=0)
    source, module = model.source(), model.module.train()
    opt = make_optimizer(module, 1e-3, 1e-6)
    loss_fn = module.loss
    opt_step = opt.step
    if args.mode == "compile":
        loss_fn = torch.compile(module.loss)
    elif args.mode == "compile-step":
        loss_fn, opt_step = torch.compile(module.loss), torch.compile(opt.step)
    elif args.mode == "compile-trunks":
        module.encoder = torch.compile(module.encoder)
        module.decoder = torch.compile(module.decoder)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    def step() -> torch.Tensor:
        batch = source.take(torch.randint(0, source.n_obs, (128,), generator=gen))
        out = loss_fn(batch, 1.0)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt_step()
        return out.loss.detach()

    t = time.perf_counter()
    for _ in range(5):
        step()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    total = sum(step() for _ in range(args.steps))
    ms = 1e3 * (time.perf_counter() - t) / args.steps
    counters = torch._dynamo.utils.counters
    return {"mode": args.mode, "warmup_s": warm, "ms_per_step": ms,
            "graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "mean_loss": float(total) / args.steps, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--simulate", action="store_true",
                    help="bench_vs_scvi.py's 20k-cell data (batch key batch) instead of --data")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(worker(args)))
        return
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--mode", mode, "--data", str(args.data),
               "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.batch_key:
            cmd += ["--batch-key", args.batch_key]
        if args.simulate:
            cmd.append("--simulate")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode:
            print(f"{mode}: failed ({res.returncode}): {res.stderr.strip()[-500:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{mode}: warm-up {r['warmup_s']:.1f} s, {r['ms_per_step']:.1f} ms/step, "
              f"{r['graphs']} graphs compiled, {r['graph_breaks']} graph breaks, "
              f"mean loss {r['mean_loss']:.2f} "
              f"(torch {r['torch']}, {r['threads']} thread(s))", flush=True)


if __name__ == "__main__":
    main()
