"""The ``geovae`` command line: a thin layer over `geovae.runs`.

Exit codes: 0 success, 2 bad input or usage, 1 internal error. Errors are one line on stderr;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from geovae.cli._types import Group

app = typer.Typer(
    name="geovae",
    cls=Group,
    help=(
        "Fit deep generative models to single-cell and tabular data and embed cells in "
        "latent spaces of the right shape (Euclidean, sphere, hyperbolic).\n\n"
        "Typical run:  geovae fit data/pbmc68k_counts.h5ad --label-key bulk_labels\n\n"
        "Outputs go to AnnData: obsm['X_geovae'] (latent), obs['geovae_cluster'], "
        "obsm['X_geovae_umap'] (and X_umap where the input has none), uns['geovae'] (run "
        "metadata), plus a UMAP PNG and a model directory."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
from geovae.cli._common import (  # noqa: E402
    Backed,
    Compile,
    ConditionPrior,
    DeleteMoves,
    Device,
    Devices,
    DirichletAlpha,
    EncoderInputOpt,
    LabelKey,
    MergeRuleOpt,
    MixtureStartOpt,
    MixtureWeightsOpt,
    NCells,
    NClusters,
    NNeighbors,
    NoUmap,
    ObsColumns,
    Precision,
    Resolution,
    Seed,
    Threads,
    UmapEpochs,
    WarmStart,
    _check_device,
    _relaunch,
    _report,
    _set_threads,
    argument,
    guarded,
    run_context,
)
from geovae.cli._flags import fit_options  # noqa: E402
from geovae.cli._types import (  # noqa: E402
    Command,
    Freeze,
    Latent,
    Likelihood,
    Method,
    Model,
    Novelty,
    Posterior,
    value,
)

INPUT_HELP = ("Cells x features: .h5ad; .csv/.tsv (optionally .gz) with samples as rows "
              "(non-numeric named columns become obs); a 10x .h5; or a 10x Matrix Market "
              "folder (matrix.mtx, features.tsv/genes.tsv, barcodes.tsv, optionally .gz).")


def command(fn: Callable[..., None]) -> Callable[..., None]:
    """A ``geovae`` command: ``fn`` `guarded` (message options, one-line errors), registered
    on the app as a `Command`."""
    return app.command(cls=Command)(guarded(fn))


def _version(value: bool) -> None:
    if value:
        from geovae import __version__

        typer.echo(f"geovae {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Fit deep generative models with latent spaces of the right shape."""


@command
def fit(
    ctx: typer.Context,
    input: Annotated[Path, argument("INPUT", INPUT_HELP)],
    out: Annotated[Path | None, typer.Option(
        help="Output .h5ad (default: INPUT_STEM.geovae.h5ad beside the input).")] = None,
    model_dir: Annotated[Path | None, typer.Option(
        help="Where to save the trained model (default: OUT_STEM.model beside OUT).")] = None,
    model: Annotated[Model, typer.Option(
        case_sensitive=False,
        help="vae: one VAE, latent and likelihood swappable; cgmvae: Gaussian-mixture VAE "
             "with a Dirichlet prior (clusters and, with --label-key, a classifier; its "
             "components live on the chosen --latent manifold).")] = Model.vae,
    latent: Annotated[Latent, typer.Option(
        case_sensitive=False,
        help="Latent geometry: sphere is S^d in R^(d+1), hyperbolic the Lorentz H^d in "
             "R^(d+1).")] = Latent.euclidean,
    latent_dim: Annotated[int | None, typer.Option(
        help="Intrinsic latent dimension d (default 10; 20 for a CSV/TSV table). "
             "sphere/hyperbolic latents have d+1 coordinates in X_geovae.",
        show_default=False)] = None,
    posterior: Annotated[Posterior, typer.Option(
        case_sensitive=False,
        help="Posterior on the sphere: von Mises-Fisher or Power Spherical.")] = Posterior.vmf,
    flow: Annotated[int, typer.Option(
        help="RealNVP coupling layers after the Euclidean posterior (0: none).")] = 0,
    likelihood: Annotated[Likelihood, typer.Option(
        case_sensitive=False,
        help="auto: NB for non-negative integer counts, else Gaussian.")] = Likelihood.auto,
    encoder_input: EncoderInputOpt = None,
    layer: Annotated[str | None, typer.Option(
        help="AnnData layer holding raw counts (default: X); raw: adata.raw (its values for "
             "the features of X).", metavar="<name>")] = None,
    batch_key: Annotated[list[str] | None, typer.Option(
        help="obs column(s) of batch/condition covariates fed to encoder and decoder; "
             "repeat for several.", metavar="<column>")] = None,
    label_key: Annotated[str | None, typer.Option(
        help="obs column of cell-type labels: coloured in the plot, used by cgmvae, and the "
             "clusters are scored against it (ARI, NMI).", metavar="<column>")] = None,
    n_clusters: NClusters = None,
    dirichlet_alpha: DirichletAlpha = None,
    mixture_weights: MixtureWeightsOpt = None,
    condition_prior: ConditionPrior = None,
    delete_moves: DeleteMoves = None,
    merge_rule: MergeRuleOpt = None,
    warm_start: WarmStart = None,
    mixture_start: MixtureStartOpt = None,
    obs_columns: ObsColumns = None,
    n_top_genes: Annotated[int | None, typer.Option(
        help="Use only the N most highly variable features (scanpy).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Maximum epochs (default: scales with cell count, 400 for <=20k cells); early "
             "stopping on a 10% validation split restores the best weights; a 5% test split "
             "(at most 2,000 cells) is kept out of both.")] = None,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    device: Device = "auto",
    devices: Devices = 1,
    precision: Precision = "auto",
    compile: Compile = False,
    threads: Threads = 0,
    backed: Backed = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed + device: same "
                                           "numbers).")] = 0,
    resolution: Resolution = None,
    n_neighbors: NNeighbors = 15,
    no_umap: NoUmap = False,
    umap_epochs: UmapEpochs = None,
    volume: Annotated[bool, typer.Option(
        "--volume", help="Also write obs['geovae_volume'] = log sqrt(det JᵀJ) of the "
                         "decoder.")] = False,
    heldout_samples: Annotated[int, typer.Option(
        help="Importance samples per test cell of the held-out log-likelihood (0: skip it); "
             "its standard error is logged, use 100 or more for a converged bound.")] = 20,
    **outputs: Any,
) -> None:
    """Train a model on INPUT and write the latent, clusters, UMAP and the model."""
    from geovae.runs import fit_plan, run_fit

    _relaunch(ctx, devices, _check_device(device),
              lambda: fit_plan(input, out, model_dir, outputs["plot"], not no_umap,
                               outputs["metrics_json"], n_neighbors))
    _set_threads(threads)
    kwargs = {**fit_options(ctx), "device": _check_device(device)}
    result = run_fit(input, out=out, model_dir=model_dir, resolution=resolution, **outputs,
                     obs_columns=obs_columns or [], backed=backed, n_neighbors=n_neighbors,
                     umap=not no_umap, umap_epochs=umap_epochs, **run_context(ctx), **kwargs)
    _report(result)


@command
def embed(
    ctx: typer.Context,
    model_dir: Annotated[Path, argument("MODEL_DIR", "A model directory written by geovae fit.")],
    input: Annotated[Path, argument("INPUT", "New cells (any INPUT geovae fit reads); genes are "
                                             "matched by name.")],
    out: Annotated[Path | None, typer.Option(
        help="Output .h5ad (default: INPUT_STEM.geovae.h5ad beside the input).")] = None,
    volume: Annotated[bool, typer.Option(
        "--volume", help="Also write obs['geovae_volume'] (decoder volume element).")] = False,
    label_key: LabelKey = None,
    obs_columns: ObsColumns = None,
    resolution: Resolution = None,
    n_neighbors: NNeighbors = 15,
    no_umap: NoUmap = False,
    umap_epochs: UmapEpochs = None,
    device: Device = "cpu",
    threads: Threads = 0,
    backed: Backed = None,
    **outputs: Any,
) -> None:
    """Embed new data with a trained model (missing genes filled and reported)."""
    from geovae.runs import run_embed

    _set_threads(threads)
    result = run_embed(model_dir, input, out=out, resolution=resolution, **outputs,
                       device=_check_device(device), volume=volume,
                       obs_columns=obs_columns or [], n_neighbors=n_neighbors, backed=backed,
                       umap=not no_umap, umap_epochs=umap_epochs, label_key=label_key,
                       threads=threads, **run_context(ctx))
    _report(result)


@command
def transfer(
    ctx: typer.Context,
    model_dir: Annotated[Path, argument("MODEL_DIR", "The reference: a model directory written "
                                                     "by geovae fit (never modified).")],
    query: Annotated[Path, argument("QUERY", "Query cells (any INPUT geovae fit reads); genes "
                                             "matched by name, missing ones zero-filled.")],
    out: Annotated[Path | None, typer.Option(
        help="Query output .h5ad (default: QUERY_STEM.geovae.h5ad beside the query).")] = None,
    new_model_dir: Annotated[Path | None, typer.Option(
        "--model-dir", help="Where the query-mapped model goes (default: OUT_STEM.model); it "
                            "can itself be a reference.")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="The reference's fit output (.h5ad): also write OUT_STEM.joint.h5ad and "
             "OUT_STEM.joint.png with reference and query on the same UMAP.")] = None,
    batch_key: Annotated[list[str] | None, typer.Option(
        help="The reference's batch/condition column(s), present in the query (default: the "
             "reference's). New categories get new weights.", metavar="<column>")] = None,
    label_key: Annotated[str | None, typer.Option(
        help="Query labels to use as semi-supervision (optional; unknown/NaN = unlabelled).",
        metavar="<column>")] = None,
    eval_key: Annotated[str | None, typer.Option(
        help="Query column of true labels, only to report accuracy and macro-F1 (and ARI/NMI "
             "of the clusters).", metavar="<column>")] = None,
    freeze: Annotated[Freeze, typer.Option(
        case_sensitive=False,
        help="all: train only the new categories' weights (reference kept exactly); "
             "covariates: also the layers covariates enter; none: fine-tune everything.")
    ] = Freeze.all,
    epochs: Annotated[int | None, typer.Option(
        help="Maximum epochs on the query (default: scales with cells).")] = None,
    unknown_threshold: Annotated[float, typer.Option(
        help="Cells with label confidence below this are labelled 'unknown'.")] = 0.5,
    novelty: Annotated[Novelty, typer.Option(
        case_sensitive=False,
        help="The unknown check: query (how well the reference explains each cell, and "
             "regions of the joint latent denser in query cells than the query's overall and "
             "its label's share), reference (the first part alone: cheaper) or query-overall "
             "(against the overall share only: also flags known types commoner in the query).")
    ] = Novelty.query,
    obs_columns: ObsColumns = None,
    resolution: Resolution = None,
    n_neighbors: Annotated[int, typer.Option(
        help="Neighbours per cell: the kNN graph of clusters and UMAP, and the reference cells "
             "each query cell's label and UMAP place come from.")] = 15,
    no_umap: NoUmap = False,
    umap_epochs: UmapEpochs = None,
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = 0,
    backed: Backed = None,
    seed: Seed = 0,
    **outputs: Any,
) -> None:
    """Map a query onto a trained reference, transfer its labels, flag unexplained cells."""
    from geovae.runs import run_transfer

    _set_threads(threads)
    result = run_transfer(model_dir, query, out=out, new_model_dir=new_model_dir,
                          reference=reference, resolution=resolution, backed=backed, **outputs,
                          obs_columns=obs_columns or [],
                          n_neighbors=n_neighbors, umap=not no_umap, umap_epochs=umap_epochs,
                          batch_key=batch_key or None, label_key=label_key, eval_key=eval_key,
                          freeze=value(freeze), epochs=epochs, seed=seed,
                          unknown_threshold=unknown_threshold, novelty=value(novelty),
                          device=_check_device(device),
                          precision=value(precision), threads=threads,
                          progress=not ctx.params["quiet"], **run_context(ctx))
    _report(result)


@command
def cluster(
    ctx: typer.Context,
    input: Annotated[Path, argument("INPUT", "An .h5ad with an embedding in obsm.")],
    out: Annotated[Path, typer.Option(help="Output .h5ad.", show_default=False)],
    use_rep: Annotated[str, typer.Option(help="obsm key of the embedding.",
                                         metavar="<key>")] = "X_geovae",
    method: Annotated[Method, typer.Option(
        case_sensitive=False,
        help="leiden: the kNN graph of the embedding; mixture: a cgmvae model's "
             "argmax q(y|z).")] = Method.leiden,
    label_key: LabelKey = None,
    resolution: Resolution = None,
    n_neighbors: NNeighbors = 15,
    no_umap: NoUmap = False,
    umap_epochs: UmapEpochs = None,
    seed: Annotated[int, typer.Option(help="Random seed for Leiden and UMAP.")] = 0,
    **outputs: Any,
) -> None:
    """Cluster cells on the kNN graph of an embedding (Leiden) and recompute the UMAP."""
    from geovae.runs import run_cluster

    result = run_cluster(input, out, use_rep=use_rep, resolution=resolution,
                         method=value(method), seed=seed, **outputs,
                         n_neighbors=n_neighbors,
                         umap=not no_umap, umap_epochs=umap_epochs, label_key=label_key,
                         **run_context(ctx))
    _report(result)


def dataset(out_help: str) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """A command that writes a synthetic dataset: the OUT argument (``out_help``), the
    generator's own options, then ``--seed``. The function takes OUT and the seed in its
    ``**out_and_seed`` and returns its run's result, which the command reports."""

    def register(fn: Callable[..., Any]) -> Callable[..., None]:
        own = inspect.signature(fn, eval_str=True)
        out = inspect.Parameter("out", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=Annotated[Path, argument("OUT", out_help)])
        seed = inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, annotation=Seed,
                                 default=0)
        options = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]

        @functools.wraps(fn)
        def write(**kwargs: Any) -> None:
            _report(fn(**kwargs))

        write.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[out, *options, seed], return_annotation=None)
        return command(write)

    return register


@dataset("Output .h5ad of simulated counts.")
def simulate(
    n_cells: NCells = 2000,
    n_genes: Annotated[int, typer.Option(help="Number of genes.")] = 500,
    n_types: Annotated[int, typer.Option(help="Number of cell types.")] = 5,
    n_conditions: Annotated[int, typer.Option(help="Conditions that shift every type.")] = 2,
    **out_and_seed: Any,
) -> Any:
    """Simulate negative-binomial counts with known cell types and conditions."""
    from geovae.runs import run_simulate

    return run_simulate(n_cells=n_cells, n_genes=n_genes, n_types=n_types,
                        n_conditions=n_conditions, **out_and_seed)


@dataset("Output .h5ad of conditional blobs.")
def blobs(
    n_cells: NCells = 2000,
    n_features: Annotated[int, typer.Option(help="Number of features.")] = 50,
    n_blobs: Annotated[int, typer.Option(help="Number of blobs (obs['blob']).")] = 5,
    n_conditions: Annotated[int, typer.Option(help="Conditions that shift every blob "
                                                   "(obs['condition']).")] = 3,
    condition_shift: Annotated[float, typer.Option(help="Scale of the condition shift "
                                                        "(blob scale is 1).")] = 2.0,
    **out_and_seed: Any,
) -> Any:
    """Synthetic conditional blobs, the c*GMΔVAE demo (then: geovae fit OUT --model cgmvae
    --batch-key condition --likelihood gaussian --n-clusters 5)."""
    from geovae.runs import run_blobs

    return run_blobs(n_cells=n_cells, n_features=n_features, n_blobs=n_blobs,
                     n_conditions=n_conditions, condition_shift=condition_shift,
                     **out_and_seed)


from geovae.cli.report import report  # noqa: E402

app.command(cls=Command)(report)  # geovae report, listed last


def main() -> None:
    """Run the CLI (signals are set up by `geovae.__main__`, the console-script entry)."""
    app()


if __name__ == "__main__":
    main()
