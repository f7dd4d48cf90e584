"""File-level runs behind the CLI and the workflows (see `geovae.runs.jobs` for what geovae
promises about files)."""

from geovae.runs.jobs import fit_plan, run_blobs, run_cluster, run_embed, run_fit, run_simulate
from geovae.runs.plan import OutputPlan, RunResult, default_outputs
from geovae.runs.transfer import run_transfer

__all__ = ["OutputPlan", "RunResult", "default_outputs", "fit_plan", "run_blobs", "run_cluster",
           "run_embed", "run_fit", "run_simulate", "run_transfer"]
