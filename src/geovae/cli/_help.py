"""``--help`` laid out for an 80-column terminal: options grouped into panels (data, model,
training, clusters and UMAP, performance, outputs, messages), and flag names never cut.

typer prints each panel as a rich table whose columns (flags, negative flags, value type,
help) shrink together when the terminal is narrow, which cut ``--no-condition-prior`` to
``--no-condition…``. `HelpTable` keeps the flag columns whole (no wrap: the type and help
columns give way) and folds an over-long word of the help text onto the next line instead of
cutting it.
"""

from __future__ import annotations

from typing import Any

from rich.table import Column, Table
from rich.text import Text

#: panels in the order --help shows them, and the parameters in each (by Python name)
PANELS: dict[str, tuple[str, ...]] = {
    "Data": ("layer", "batch_key", "label_key", "eval_key", "obs_columns", "n_top_genes",
             "use_rep", "backed"),
    "Model": ("model", "latent", "latent_dim", "posterior", "flow", "likelihood",
              "encoder_input", "n_clusters", "dirichlet_alpha", "mixture_weights",
              "condition_prior", "delete_moves", "merge_rule", "warm_start", "mixture_start",
              "volume"),
    "Query mapping": ("freeze", "unknown_threshold", "novelty"),
    "Training": ("epochs", "batch_size", "lr", "seed"),
    "Clusters and UMAP": ("method", "resolution", "merge", "n_neighbors", "no_umap", "umap_epochs"),
    "Performance": ("device", "devices", "precision", "compile", "threads"),
    "Outputs": ("out", "model_dir", "new_model_dir", "reference", "plot", "metrics_json",
                "heldout_samples"),
    "Simulation": ("n_cells", "n_genes", "n_features", "n_types", "n_blobs", "n_conditions",
                   "condition_shift"),
    "Messages and help": ("quiet", "verbose", "debug", "help", "version"),
}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
_RANK = {panel: i for i, panel in enumerate(PANELS)}


def panel_of(name: str | None) -> str | None:
    """The help panel of a parameter (None: typer's default)."""
    return _PANEL_OF.get(name or "")


def in_panels(params: list[Any]) -> list[Any]:
    """``params`` with their panels set, options in panel order (arguments first)."""
    for param in params:
        if getattr(param, "param_type_name", "") == "option" and panel_of(param.name):
            param.rich_help_panel = panel_of(param.name)

    def rank(param: Any) -> int:
        if getattr(param, "param_type_name", "") != "option":
            return -1
        return _RANK.get(getattr(param, "rich_help_panel", None) or "", len(_RANK))

    return sorted(params, key=rank)


class HelpTable(Table):
    """typer's options table, narrowed for 80 columns. typer adds each option as a row of
    [required], flags, short flags, negative flags, negative short flags, value type, help
    to a table without columns; here the negative flag goes under its flag
    (``--condition-prior`` / ``--no-condition-prior``) and the short ones share a column,
    the flag columns never wrap (the type and help columns give way), and a word too long for
    its column folds onto the next line instead of being cut."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = list(renderables)
        if not self.columns and len(cells) in (6, 7):
            self._option_rows = True
            n = len(cells) - 3
            for i in range(n):
                fold = i >= n - 2
                self.columns.append(Column(_index=i, highlight=self.highlight,
                                           no_wrap=not fold,
                                           overflow="fold" if fold else "ellipsis"))
        if getattr(self, "_option_rows", False) and len(cells) in (6, 7):
            head, (flag, short, neg, neg_short, kind, text) = cells[:-6], cells[-6:]
            cells = [*head, _lines(flag, neg), _lines(short, neg_short), kind, _folded(text)]
        super().add_row(*cells, **kwargs)


def _lines(first: Any, second: Any) -> Any:
    """Two flag cells (rich Text) as one, the second on its own line when there is one."""
    if isinstance(first, Text) and isinstance(second, Text) and second.plain:
        return Text("\n").join([first, second]) if first.plain else second
    return first


def _folded(help_cell: Any) -> Any:
    """The help cell (rich Columns of Text) with over-long words folded, not cut."""
    for item in getattr(help_cell, "renderables", [help_cell]):
        if isinstance(item, Text):
            item.overflow = "fold"
    return help_cell


def install() -> None:
    """Make typer's help use `HelpTable` (only the tables typer builds row by row)."""
    from typer import rich_utils

    if getattr(rich_utils, "Table", None) is Table:
        rich_utils.Table = HelpTable
