"""The ``geovae`` command line: a thin layer over `geovae.runs`.

Exit codes: 0 success, 2 bad input or usage, 1 internal error. Errors are one line on stderr;
``--debug`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="geovae",
    help=(
        "Fit deep generative models to single-cell and tabular data and embed cells in "
        "latent spaces of the right shape (Euclidean, sphere, hyperbolic).\n\n"
        "Typical run:  geovae fit data/pbmc68k_counts.h5ad --label-key bulk_labels\n\n"
        "Outputs go to AnnData: obsm['X_geovae'] (latent), obs['geovae_cluster'], "
        "obsm['X_umap'], uns['geovae'] (run metadata), plus a UMAP PNG and a model directory."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
from geovae.cli._common import (  # noqa: E402
    Debug,
    Device,
    ObsColumns,
    Plot,
    Quiet,
    Resolution,
    Threads,
    _command_line,
    _report,
    _set_threads,
    guarded,
)


def _fit_options(*, latent: str, posterior: str, flow: int, n_clusters: int | None,
                 dirichlet_alpha: float | None, quiet: bool, **rest: Any) -> dict[str, Any]:
    """Map the flat CLI options onto `geovae.fit` keyword arguments (checked there)."""
    latent_options: dict[str, Any] = {}
    if latent == "sphere" or posterior != "vmf":
        latent_options["posterior"] = posterior
    if flow:
        latent_options["flow"] = flow
    model_options: dict[str, Any] = {}
    if n_clusters is not None:
        model_options["n_clusters"] = n_clusters
    if dirichlet_alpha is not None:
        model_options["dirichlet_alpha"] = dirichlet_alpha
    return {"latent": latent, "latent_options": latent_options,
            "model_options": model_options, "progress": not quiet, **rest}


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


@app.command()
@guarded
def fit(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(
        help="Cells x features: .h5ad, or .csv/.tsv (optionally .gz) with samples as rows; "
             "non-numeric named columns become obs.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="Output .h5ad (default: INPUT_STEM.geovae.h5ad beside the input).")] = None,
    model_dir: Annotated[Path | None, typer.Option(
        help="Where to save the trained model (default: OUT_STEM.model beside OUT).")] = None,
    model: Annotated[str, typer.Option(
        help="vae (one VAE, latent and likelihood swappable) or cgmvae (Gaussian-mixture VAE "
             "with a Dirichlet prior: clusters and, with --label-key, a classifier; its "
             "components live on the chosen --latent manifold).")] = "vae",
    latent: Annotated[str, typer.Option(
        help="Latent geometry: euclidean, sphere (S^d in R^(d+1)) or hyperbolic (Lorentz "
             "H^d in R^(d+1)).")] = "euclidean",
    latent_dim: Annotated[int, typer.Option(
        help="Intrinsic latent dimension d. sphere/hyperbolic latents have d+1 coordinates "
             "in X_geovae.")] = 10,
    posterior: Annotated[str, typer.Option(
        help="Posterior on the sphere: vmf (von Mises-Fisher) or power-spherical.")] = "vmf",
    flow: Annotated[int, typer.Option(
        help="RealNVP coupling layers after the Euclidean posterior (0: none).")] = 0,
    likelihood: Annotated[str, typer.Option(
        help="auto (NB for non-negative integer counts, else Gaussian), nb, zinb, gaussian, "
             "bernoulli.")] = "auto",
    layer: Annotated[str | None, typer.Option(
        help="AnnData layer holding raw counts (default: X).")] = None,
    batch_key: Annotated[list[str] | None, typer.Option(
        help="obs column(s) of batch/condition covariates fed to encoder and decoder; "
             "repeat for several.")] = None,
    label_key: Annotated[str | None, typer.Option(
        help="obs column of cell-type labels (coloured in the plot; used by cgmvae).")] = None,
    n_clusters: Annotated[int | None, typer.Option(
        help="cgmvae: number of mixture components, an upper bound (default: number of "
             "labels, else 20).")] = None,
    dirichlet_alpha: Annotated[float | None, typer.Option(
        help="cgmvae: Dirichlet prior concentration; < 1 lets unused components empty "
             "out.")] = None,
    obs_columns: ObsColumns = None,
    n_top_genes: Annotated[int | None, typer.Option(
        help="Use only the N most highly variable features (scanpy).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Maximum epochs (default: scales with cell count, 400 for <=20k cells); early "
             "stopping on a 10% held-out split restores the best weights.")] = None,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    device: Device = "auto",
    threads: Threads = 0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed + device: same "
                                           "numbers).")] = 0,
    resolution: Resolution = 1.0,
    volume: Annotated[bool, typer.Option(
        help="Also write obs['geovae_volume'] = log sqrt(det JᵀJ) of the decoder.")] = False,
    plot: Plot = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Train a model on INPUT and write the latent, clusters, UMAP and the model."""
    from geovae.runs import run_fit

    _set_threads(threads)
    kwargs = _fit_options(model=model, latent=latent, latent_dim=latent_dim, posterior=posterior,
                         flow=flow, likelihood=likelihood, layer=layer, batch_key=batch_key,
                         label_key=label_key, n_clusters=n_clusters,
                         dirichlet_alpha=dirichlet_alpha, n_top_genes=n_top_genes,
                         epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                         volume=volume, quiet=quiet)
    result = run_fit(input, out=out, model_dir=model_dir, plot=plot, resolution=resolution,
                     command=_command_line(ctx), obs_columns=obs_columns or [], **kwargs)
    _report(result, quiet)


@app.command()
@guarded
def embed(
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by geovae "
                                                   "fit.", show_default=False)],
    input: Annotated[Path, typer.Argument(help="New cells (.h5ad or CSV); genes are "
                                               "matched by name.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="Output .h5ad (default: INPUT_STEM.geovae.h5ad beside the input).")] = None,
    volume: Annotated[bool, typer.Option(
        help="Also write obs['geovae_volume'] (decoder volume element).")] = False,
    obs_columns: ObsColumns = None,
    resolution: Resolution = 1.0,
    device: Device = "cpu",
    threads: Threads = 0,
    plot: Plot = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Embed new data with a trained model (missing genes filled and reported)."""
    from geovae.runs import run_embed

    _set_threads(threads)
    result = run_embed(model_dir, input, out=out, plot=plot, resolution=resolution,
                       device=device, command=_command_line(ctx), volume=volume,
                       obs_columns=obs_columns or [])
    _report(result, quiet)


@app.command()
@guarded
def transfer(
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Argument(help="The reference: a model directory written by "
                                                   "geovae fit (never modified).",
                                              show_default=False)],
    query: Annotated[Path, typer.Argument(help="Query cells (.h5ad or CSV); genes matched by "
                                               "name, missing ones zero-filled.",
                                          show_default=False)],
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
             "reference's). New categories get new weights.")] = None,
    label_key: Annotated[str | None, typer.Option(
        help="Query labels to use as semi-supervision (optional; unknown/NaN = unlabelled).")
    ] = None,
    eval_key: Annotated[str | None, typer.Option(
        help="Query column of true labels, only to report accuracy and macro-F1.")] = None,
    freeze: Annotated[str, typer.Option(
        help="all: train only the new categories' weights (reference kept exactly); "
             "covariates: also the layers covariates enter; none: fine-tune everything.")
    ] = "all",
    epochs: Annotated[int | None, typer.Option(
        help="Maximum epochs on the query (default: scales with cells).")] = None,
    unknown_threshold: Annotated[float, typer.Option(
        help="Cells with label confidence below this are labelled 'unknown'.")] = 0.5,
    obs_columns: ObsColumns = None,
    resolution: Resolution = 1.0,
    device: Device = "auto",
    threads: Threads = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    plot: Plot = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Map a query onto a trained reference, transfer its labels, flag unexplained cells."""
    from geovae.runs import run_transfer

    _set_threads(threads)
    result = run_transfer(model_dir, query, out=out, new_model_dir=new_model_dir,
                          reference=reference, plot=plot, resolution=resolution,
                          command=_command_line(ctx), obs_columns=obs_columns or [],
                          batch_key=batch_key or None, label_key=label_key, eval_key=eval_key,
                          freeze=freeze, epochs=epochs, unknown_threshold=unknown_threshold,
                          seed=seed, device=device, progress=not quiet)
    _report(result, quiet)


@app.command()
@guarded
def cluster(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="An .h5ad with an embedding in obsm.",
                                          show_default=False)],
    out: Annotated[Path, typer.Option(help="Output .h5ad.", show_default=False)],
    use_rep: Annotated[str, typer.Option(help="obsm key of the embedding.")] = "X_geovae",
    method: Annotated[str, typer.Option(
        help="leiden (kNN graph of the embedding) or mixture (a cgmvae model's "
             "argmax q(y|z)).")] = "leiden",
    resolution: Resolution = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed for Leiden and UMAP.")] = 0,
    plot: Plot = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Cluster cells on the kNN graph of an embedding (Leiden) and recompute the UMAP."""
    from geovae.runs import run_cluster

    result = run_cluster(input, out, use_rep=use_rep, resolution=resolution, method=method,
                         plot=plot, seed=seed, command=_command_line(ctx))
    _report(result, quiet)


@app.command()
@guarded
def simulate(
    out: Annotated[Path, typer.Argument(help="Output .h5ad of simulated counts.",
                                        show_default=False)],
    n_cells: Annotated[int, typer.Option(help="Number of cells.")] = 2000,
    n_genes: Annotated[int, typer.Option(help="Number of genes.")] = 500,
    n_types: Annotated[int, typer.Option(help="Number of cell types.")] = 5,
    n_conditions: Annotated[int, typer.Option(help="Conditions that shift every "
                                                   "type.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Simulate negative-binomial counts with known cell types and conditions."""
    from geovae.runs import run_simulate

    _report(run_simulate(out, n_cells=n_cells, n_genes=n_genes, n_types=n_types,
                         n_conditions=n_conditions, seed=seed), quiet)


@app.command()
@guarded
def blobs(
    out: Annotated[Path, typer.Argument(help="Output .h5ad of conditional blobs.",
                                        show_default=False)],
    n_cells: Annotated[int, typer.Option(help="Number of cells.")] = 2000,
    n_features: Annotated[int, typer.Option(help="Number of features.")] = 50,
    n_blobs: Annotated[int, typer.Option(help="Number of blobs (obs['blob']).")] = 5,
    n_conditions: Annotated[int, typer.Option(help="Conditions that shift every blob "
                                                   "(obs['condition']).")] = 3,
    condition_shift: Annotated[float, typer.Option(help="Scale of the condition shift "
                                                        "(blob scale is 1).")] = 2.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Synthetic conditional blobs, the c*GMΔVAE demo (then: geovae fit OUT --model cgmvae
    --batch-key condition --likelihood gaussian --n-clusters 5)."""
    from geovae.runs import run_blobs

    _report(run_blobs(out, n_cells=n_cells, n_features=n_features, n_blobs=n_blobs,
                      n_conditions=n_conditions, condition_shift=condition_shift, seed=seed),
            quiet)


def main() -> None:
    """Run the CLI (signals are set up by `geovae.__main__`, the console-script entry)."""
    app()


if __name__ == "__main__":
    main()
