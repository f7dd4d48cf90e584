"""The ``geovae`` command line: a thin layer over `geovae.runs`.

Exit codes: 0 success, 2 bad input or usage, 1 internal error. Errors are one line on stderr;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
err = Console(stderr=True)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages.")]
Plot = Annotated[Path | None, typer.Option(
    help="UMAP PNG path (default: beside OUT, OUT_STEM.umap.png).")]
Resolution = Annotated[float, typer.Option(help="Leiden resolution (higher: more clusters).")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present, else CPU), cpu or cuda.")]
ObsColumns = Annotated[list[str] | None, typer.Option(
    help="CSV/TSV input: a column that is metadata (obs), not a feature, even if numeric "
         "(e.g. age); repeat for several. --batch-key/--label-key columns always are.")]
Threads = Annotated[int, typer.Option(
    help="CPU threads for torch (0: torch's default, all cores). Set it to the cores you "
         "were given (e.g. Snakemake's {threads}); oversubscribed cores slow training a lot.")]


def _set_threads(threads: int) -> None:
    from geovae.errors import OptionError

    if threads < 0:
        raise OptionError("--threads must be 0 (default) or a positive number")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _command_line(ctx: typer.Context) -> str:
    """The command as run, rebuilt from the parsed options (non-default ones only)."""
    words = ["geovae", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value != param.default and value not in (None, [], ()):
            flag = param.opts[0]
            if param.is_flag:
                words.append(flag)
            else:
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    words += [flag, str(v)]
    return " ".join(shlex.quote(w) for w in words)


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one readable line on stderr (no source line)."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
        return  # library deprecations are for developers, not for users of the CLI
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one stderr line and exit codes 2 (input/usage) or 1 (internal)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from geovae.errors import GeoVAEError

        debug = kwargs.get("debug", False)
        shown = warnings.showwarning
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except GeoVAEError as exc:
            if debug:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc.cli_message()}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: no output was written (earlier outputs are untouched)")
            raise typer.Exit(130) from None
        except FloatingPointError as exc:
            if debug:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug:
                err.print_exception()
            first = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {first} "
                      "(no output was left half-written; rerun with --debug for the traceback and "
                      "report it)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        finally:
            warnings.showwarning = shown

    return wrapper


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


def _report(result: Any, quiet: bool) -> None:
    if quiet:
        return
    for msg in result.messages:
        err.print(f"[cyan]note:[/] {msg}", highlight=False, soft_wrap=True)
    err.print(f"wrote {result.out}", highlight=False, soft_wrap=True)
    if result.plot:
        err.print(f"wrote {result.plot}", highlight=False, soft_wrap=True)
    if result.model_dir:
        err.print(f"wrote model to {result.model_dir}/", highlight=False, soft_wrap=True)


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
