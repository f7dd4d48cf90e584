"""Every key geovae writes into an AnnData or a model directory, in one registry.

The writers use these names, docs/outputs.md's table is generated from `KEYS`
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
CLUSTER_ENTROPY = "geovae_cluster_entropy"
CLUSTER_NAME = "geovae_cluster_name"
MARKERS = "rank_genes_groups"
VOLUME = "geovae_volume"
NEIGHBORS = "geovae_neighbors"
SCANPY_NEIGHBORS = "neighbors"
UMAP = "X_umap"
UMAP_GEOVAE = "X_geovae_umap"
UMAP_PARAMS = "geovae_umap"
LABEL_CONFIDENCE = "geovae_label_confidence"
LABEL_PROBS = "geovae_label_probs"
SOURCE = "geovae_source"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "weights.pt"
MODEL_REFERENCE_CELLS = "reference.npz"


@dataclass(frozen=True)
class Key:
    """One output: where it goes, which verbs write it, what it holds."""

    slot: str  # obs, obsm, obsp, uns, uns['geovae'], model dir
    name: str
    written_by: tuple[str, ...]
    description: str


KEYS: tuple[Key, ...] = (
    Key("obsm", REP, ("fit", "embed", "transfer"), "latent posterior mean in the manifold's own "
        "coordinates (d columns; d+1 for sphere and hyperbolic)"),
    Key("obsm", REP_POINCARE, ("fit", "embed", "transfer"), "hyperbolic latents only: "
        "Poincaré-ball coordinates (inside the unit ball, for plotting)"),
    Key("obsm", CLUSTER_PROBS, ("fit", "embed"), "cgmvae only: q(y|x) per mixture component "
        "(K columns)"),
    Key("obs", CLUSTER_ENTROPY, ("fit", "embed"), "cgmvae only: entropy (nats) of the cell's "
        "cluster probabilities; high = uncertain cell (log K = no idea)"),
    Key("obs", CLUSTER, ("fit", "embed", "cluster"), "categorical cluster: Leiden on the latent "
        "kNN graph, or the mixture's argmax for cgmvae"),
    Key("obs", CLUSTER_NAME, ("geovae fit", "geovae embed", "geovae cluster",
                              "geovae transfer"), "each cluster's name: number and majority "
        "known label (\"3: CD14 Mono\"; without labels, its top marker gene)"),
    Key("uns", MARKERS, ("geovae fit", "geovae embed", "geovae cluster", "geovae transfer"),
        "scanpy's rank_genes_groups of geovae_cluster (t-test against the rest, 50 genes, on "
        "log-normalised expression of a seeded subsample of at most 5,000 cells; not for "
        "--backed runs): `sc.pl.rank_genes_groups(adata)`; in `geovae_rank_genes_groups` "
        "where the input holds a ranking of its own"),
    Key("obs", LABEL, ("fit", "embed", "transfer"), "predicted label of every cell (cgmvae with "
        "labels; transfer: 'unknown' below --unknown-threshold)"),
    Key("obs", LABEL_CONFIDENCE, ("transfer",), "confidence of the transferred label (how typical "
        "the cell is of the reference cells: latent distance to the best-fitting label and "
        "-ELBO given depth; times the classifier probability for the mixture model)"),
    Key("obsm", LABEL_PROBS, ("transfer",), "probability of each reference label (cgmvae: "
        "q(y|x) combined with the vote of the 15 nearest reference cells)"),
    Key("obs", SOURCE, ("transfer",), "joint object only: reference or query"),
    Key("obs", VOLUME, ("fit", "embed"), "with --volume: log sqrt(det JᵀJ) of the decoder at "
        "the cell's latent"),
    Key("obsm", UMAP, ("fit", "embed", "cluster", "transfer"), "UMAP of the latent kNN graph "
        "(transfer: placed on the reference's UMAP axes)"),
    Key("obsp", f"{NEIGHBORS}_distances", ("fit", "embed", "cluster"), "kNN distances in the "
        "latent's own metric"),
    Key("obsp", f"{NEIGHBORS}_connectivities", ("fit", "embed", "cluster"), "kNN graph "
        "weights (UMAP connectivities)"),
    Key("uns", NEIGHBORS, ("fit", "embed", "cluster"), "scanpy's neighbours parameters"),
    Key("uns", SCANPY_NEIGHBORS, ("fit", "embed", "cluster"), "the same graph where scanpy "
        "looks by default (`sc.tl.leiden(adata)`, `sc.tl.umap(adata)`), with "
        "obsp['connectivities'] and obsp['distances'] and the mark `geovae: True`; only when "
        "the input holds no graph of its own there (else `neighbors_key='geovae_neighbors'`)"),
    Key("obsp", "connectivities", ("fit", "embed", "cluster"), "copy of "
        "geovae_neighbors_connectivities for scanpy's defaults (see uns['neighbors'])"),
    Key("obsp", "distances", ("fit", "embed", "cluster"), "copy of geovae_neighbors_distances "
        "for scanpy's defaults (see uns['neighbors'])"),
    Key("uns", "umap", ("fit", "embed", "cluster"), "scanpy's UMAP parameters"),
    Key("uns", CLUSTER, ("fit", "embed", "cluster"), "scanpy's Leiden parameters (Leiden "
        "runs)"),
    Key("uns", "<column>_colors", ("fit", "embed", "cluster"), "colours of each plotted obs "
        "column (scanpy's convention; written with the plot)"),
    Key("uns", UNS, ("fit", "embed", "cluster"), "the run record (fields below)"),
    Key("obsm", UMAP_GEOVAE, ("cluster", "geovae fit", "geovae embed", "geovae cluster",
                              "geovae transfer"), "geovae's UMAP, always here "
        "(`sc.pl.embedding(adata, basis='geovae_umap')`); copied to `X_umap` (and its "
        "parameters to `uns['umap']`) only when the input holds no `X_umap` of its own: a "
        "user's `X_umap` and `uns['umap']` are never changed"),
    Key("uns", UMAP_PARAMS, ("cluster", "geovae fit", "geovae embed", "geovae cluster"),
        "scanpy's UMAP parameters of `X_geovae_umap`"),
    Key("model dir", MODEL_CONFIG, ("fit", "transfer"), "format, model config, data spec "
        "(features, likelihood, covariate and label categories), training parameters, versions"),
    Key("model dir", MODEL_WEIGHTS, ("fit", "transfer"), "the module's weights (torch, weights "
        "only)"),
    Key("model dir", MODEL_REFERENCE_CELLS, ("fit", "transfer"), "reference cells for "
        "transfer: latent, label codes, UMAP (when there is one) and -ELBO of up to 50,000 "
        "training cells (numpy arrays, no pickle); also written by GeoVAE.save"),
)

#: fields of the run record ``uns['geovae']`` -> what they hold
RECORD_FIELDS: dict[str, str] = {
    "model": "model class: vae or cgmvae",
    "likelihood": "observation model used (nb, zinb, gaussian, bernoulli)",
    "latent": "geometry, intrinsic dimension, coordinates, posterior/flow",
    "seed": "random seed",
    "n_features": "features the model uses",
    "versions": "geovae, torch, anndata, scanpy, numpy, scikit-learn, python",
    "params": "model and training parameters; model_options: the model's options in effect "
    "(encoder_input of a count model; the c*GMΔVAE's n_clusters, w_dim, mixture_weights, ...)",
    "notes": "one-line facts about the data and choices made",
    "final_losses": "last epoch's losses per term; validation loss of the best epoch",
    "loss_history": "per-epoch train and validation -ELBO, each loss term (terms) and the "
    "end of the KL warm-up in epochs (warmup_epochs)",
    "best_epoch": "epoch whose weights were kept (1-based)",
    "stopped_early": "whether early stopping ended training",
    "kl_warmup_steps": "steps of linear KL warm-up",
    "heldout_loglik": "fit: importance-sampled log-likelihood of the test cells (IWAE, encoder "
    "proposal), cells that training and early stopping never saw: min(5%, 2,000) cells drawn "
    "with the model's seed before the validation split, so the model trains on the other ~85%; "
    "kind: marginal (log p(x|c)) or predictive (c*GMΔVAE with global weights: p(y) the fitted "
    "weights E_q[π]); per_cell and per_feature means in nats, se over cells, n_samples per "
    "cell (default 20; fit's heldout_samples, --heldout-samples), n_cells, cells (test; "
    "validation or training without a test split), gain_vs_half (IWAE(S) - IWAE(S/2), "
    "same draws) and its se",
    "ppc": "fit, count likelihoods: posterior predictive check on up to 2,000 cells: observed "
    "vs model per-gene mean, variance and zero fraction (correlations of log means and log "
    "variances, log variance ratio, zero-fraction error; per-gene arrays up to 5,000 genes)",
    "n_missing_features": "embed: model features absent from the input (zero-filled)",
    "missing_features": "embed: their names (first 1000)",
    "n_extra_features": "embed: input features unknown to the model (ignored)",
    "n_clusters": "cgmvae: mixture components K",
    "n_components_used": "cgmvae: components whose mixture weight is >= 0.5%",
    "n_components_argmax": "cgmvae: components that are the argmax of >= 0.5% of cells",
    "start_resolution": "cgmvae: Leiden resolution of the mixture's start, chosen by ICL",
    "start_candidates": "cgmvae: per resolution the start weighed, Leiden's clusters and "
    "their integrated classification likelihood (ICL; higher is better)",
    "empty_components": "cgmvae: components whose mixture weight is < 0.5%",
    "deleted_components": "cgmvae: components the delete moves after training removed from "
    "q(y|z) (the bound was higher without them); their weight is the prior's share",
    "weights_model": "cgmvae: global (one q(π) = Dir(γ) for the data set, unused components "
    "empty by inference) or per_cell (the thesis's d per cell)",
    "mixture_weights": "cgmvae: mixture weights, E_q[π] (global weights) or the mean of q(y|x) "
    "over cells (per-cell d)",
    "cluster_probs": "cgmvae: how geovae_cluster_probs was computed (predictive q(y|x): draws "
    "of z and seed; or at the posterior mean)",
    "calibration": "cgmvae with labels: expected calibration error (15 bins) of the predicted "
    "labels on labelled held-out cells (the test split in fit, never trained or early-stopped "
    "on; all cells in embed), next "
    "to the ECE of q(y|z) at the posterior mean, accuracy and number of cells; the "
    "`temperature` T the label probabilities were scaled by (p^(1/T), renormalised: the "
    "argmax is the same), fitted after training on the validation split's "
    "`temperature_cells` labelled cells (1: none), and the ECE without it (`ece_untempered`)",
    "dirichlet_alpha": "cgmvae: Dirichlet prior concentration",
    "elbo_terms": "cgmvae: last epoch's five -ELBO terms",
    "cluster": "method, representation, resolution, neighbours, metric, number of clusters; "
    "with a chosen resolution (`resolution_choice`): the rule, grid, stability and clusters per "
    "grid point, the cells searched, and why resolution 1 was used instead (`fallback`); "
    "with a given resolution (`merge`): the `rule` (`threshold`; `gap`, with its `floor`, "
    "`ratio` and whether it stopped at a drop, `at_gap`; or `off` for `--leiden-merge off`), "
    "the Leiden clusters merged because the graph could not "
    "tell them apart (`merged`, each pair named `a+b` by the Leiden names, and its PAGA "
    "`connectivity`), the `threshold`, the clusters before and after and the highest "
    "connectivity left (`max_left`)",
    "cluster_names": "command line: per cluster (`cluster`) its majority label (`label`, "
    "`label_share` of its labelled cells, `label_key`) and top 5 marker genes (`markers`), "
    "how they were ranked (`markers_from`: uns key, cells, expression, seed) and the "
    "report's dot plot (`dotplot`: top 2 markers per cluster, fraction of cells expressing "
    "each and mean log-normalised expression; on a matrix that is no expression, e.g. a "
    "standardised table, the fraction above the feature's median and the mean value: "
    "`fraction_of`)",
    "command": "the command line that produced the file",
    "commands": "every command line that made the file, first to last (e.g. fit, transfer, "
    "cluster; a transfer with --reference starts from the reference output's)",
    "dataset": "the name of the input file the cells came from (kept by later commands)",
    "label_agreement": "command line with labels (--label-key; transfer: --eval-key): ARI "
    "and NMI of geovae_cluster against the labels on labelled cells, their numbers of "
    "clusters, labels and cells, and the accuracy of geovae_label where the model predicts "
    "labels",
    "umap": "whether this run computed a UMAP (not with --no-umap or umap=False) and the "
    "obsm/uns keys it wrote it to (one policy: geovae.tools.umap_keys), its optimisation "
    "epochs `n_epochs` (--umap-epochs), `negative_sample_rate`, initial `learning_rate` "
    "(1.43 at the default above 10,000 cells, else umap-learn's 1) and starting layout `init` "
    "(pca: the latent's first two principal components; spectral with --umap-epochs 0)",
    "transfer": "transfer: features matched/missing, new categories, frozen weights, epochs, "
    "unknown-call rate, accuracy and macro-F1 against --eval-key; with --reference, `mixing`: "
    "scIB scores of the query against the reference cells of the same labels (iLISI overall "
    "and within labels, kBET acceptance, batch and label silhouettes, NMI, ARI; balanced "
    "subsample of at most 3,000 cells per source; `labels`: eval_key or transferred)",
}


def keys_table() -> str:
    """The outputs table of docs/outputs.md (Markdown; docs/make_outputs.py writes it)."""
    rows = ["| where | key | written by | what |", "|---|---|---|---|"]
    rows += [f"| {k.slot} | `{k.name}` | {', '.join(k.written_by)} | {k.description} |"
             for k in KEYS]
    rows += [f"| uns['geovae'] | `{name}` | | {what} |" for name, what in RECORD_FIELDS.items()]
    return "\n".join(rows)


def sets_fields(verb: str) -> str:
    """A numpydoc "Sets the following fields" body for ``verb``."""
    return "\n".join(f"``adata.{k.slot}['{k.name}']``\n    {k.description}"
                     for k in KEYS if verb in k.written_by and k.slot != "model dir")
