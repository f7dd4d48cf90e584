"""Every key geovae writes into an AnnData or a model directory, in one registry.

The writers use these names, the README's output table is generated from `KEYS`
(`keys_table`), the numpydoc "Sets the following fields" sections list them, and the tests
check that a run writes nothing that is not registered here.
"""

from __future__ import annotations

from dataclasses import dataclass

UNS = "geovae"
REP = "X_geovae"
REP_POINCARE = "X_geovae_poincare"
CLUSTER = "geovae_cluster"
CLUSTER_PROBS = "geovae_cluster_probs"
LABEL = "geovae_label"
VOLUME = "geovae_volume"
NEIGHBORS = "geovae_neighbors"
UMAP = "X_umap"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "weights.pt"


@dataclass(frozen=True)
class Key:
    """One output: where it goes, which verbs write it, what it holds."""

    slot: str  # obs, obsm, obsp, uns, uns['geovae'], model dir
    name: str
    written_by: tuple[str, ...]
    description: str


KEYS: tuple[Key, ...] = (
    Key("obsm", REP, ("fit", "embed"), "latent posterior mean in the manifold's own "
        "coordinates (d columns; d+1 for sphere and hyperbolic)"),
    Key("obsm", REP_POINCARE, ("fit", "embed"), "hyperbolic latents only: Poincaré-ball "
        "coordinates (inside the unit ball, for plotting)"),
    Key("obsm", CLUSTER_PROBS, ("fit", "embed"), "cgmvae only: q(y|x) per mixture component "
        "(K columns)"),
    Key("obs", CLUSTER, ("fit", "embed", "cluster"), "categorical cluster: Leiden on the latent "
        "kNN graph, or the mixture's argmax for cgmvae"),
    Key("obs", LABEL, ("fit", "embed"), "cgmvae with labels only: predicted label of every "
        "cell"),
    Key("obs", VOLUME, ("fit", "embed"), "with --volume: log sqrt(det JᵀJ) of the decoder at "
        "the cell's latent"),
    Key("obsm", UMAP, ("fit", "embed", "cluster"), "UMAP of the latent kNN graph"),
    Key("obsp", f"{NEIGHBORS}_distances", ("fit", "embed", "cluster"), "kNN distances in the "
        "latent's own metric"),
    Key("obsp", f"{NEIGHBORS}_connectivities", ("fit", "embed", "cluster"), "kNN graph "
        "weights (UMAP connectivities)"),
    Key("uns", NEIGHBORS, ("fit", "embed", "cluster"), "scanpy's neighbours parameters"),
    Key("uns", "umap", ("fit", "embed", "cluster"), "scanpy's UMAP parameters"),
    Key("uns", CLUSTER, ("fit", "embed", "cluster"), "scanpy's Leiden parameters (Leiden "
        "runs)"),
    Key("uns", "<column>_colors", ("fit", "embed", "cluster"), "colours of each plotted obs "
        "column (scanpy's convention; written with the plot)"),
    Key("uns", UNS, ("fit", "embed", "cluster"), "the run record (fields below)"),
    Key("model dir", MODEL_CONFIG, ("fit",), "format, model config, data spec (features, "
        "likelihood, covariate and label categories), training parameters, versions"),
    Key("model dir", MODEL_WEIGHTS, ("fit",), "the module's weights (torch, weights only)"),
)

#: fields of the run record ``uns['geovae']`` -> what they hold
RECORD_FIELDS: dict[str, str] = {
    "model": "model class: vae or cgmvae",
    "likelihood": "observation model used (nb, zinb, gaussian, bernoulli)",
    "latent": "geometry, intrinsic dimension, coordinates, posterior/flow",
    "seed": "random seed",
    "n_features": "features the model uses",
    "versions": "geovae, torch, anndata, scanpy, numpy, scikit-learn, python",
    "params": "model and training parameters",
    "notes": "one-line facts about the data and choices made",
    "final_losses": "last epoch's losses per term; validation loss of the best epoch",
    "loss_history": "per-epoch train and validation -ELBO",
    "best_epoch": "epoch whose weights were kept (1-based)",
    "stopped_early": "whether early stopping ended training",
    "kl_warmup_steps": "steps of linear KL warm-up",
    "n_missing_features": "embed: model features absent from the input (zero-filled)",
    "missing_features": "embed: their names (first 1000)",
    "n_extra_features": "embed: input features unknown to the model (ignored)",
    "n_clusters": "cgmvae: mixture components K",
    "n_components_used": "cgmvae: components that are the argmax of >= 0.5% of cells",
    "empty_components": "cgmvae: the other components",
    "dirichlet_alpha": "cgmvae: Dirichlet prior concentration",
    "elbo_terms": "cgmvae: last epoch's five -ELBO terms",
    "cluster": "method, representation, resolution, neighbours, metric, number of clusters",
    "command": "the command line that produced the file",
}


def keys_table() -> str:
    """The README's output table (Markdown)."""
    rows = ["| where | key | written by | what |", "|---|---|---|---|"]
    rows += [f"| {k.slot} | `{k.name}` | {', '.join(k.written_by)} | {k.description} |"
             for k in KEYS]
    rows += [f"| uns['geovae'] | `{name}` | | {what} |" for name, what in RECORD_FIELDS.items()]
    return "\n".join(rows)


def sets_fields(verb: str) -> str:
    """A numpydoc "Sets the following fields" body for ``verb``."""
    return "\n".join(f"``adata.{k.slot}['{k.name}']``\n    {k.description}"
                     for k in KEYS if verb in k.written_by and k.slot != "model dir")
