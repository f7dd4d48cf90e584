"""Colours of geovae's pictures: colour-blind-safe categorical palettes, one colour per
category name wherever that category is drawn, readable type.

Palettes, by the number of categories (not counting "unknown"-like ones, always light grey):

- up to 8: Okabe & Ito (2008), safe for the common colour-vision deficiencies;
- 9 to 12: Paul Tol's 12-colour qualitative scheme (2012), nearly as safe;
- more: matplotlib's ``tab20``, ``tab20b``, ``tab20c`` without their greys (54 colours, then
  repeated).
  Beyond 12 categories no palette is colour-blind safe: the pictures then also write each
  category's name at its centre.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
             "#000000"]
#: Tol's muted scheme (9, designed as one set), then the three other colours of his
#: 12-colour scheme, in the order that keeps the most alike pairs out of small sets
TOL_12 = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99",
          "#999933", "#AA4499", "#661100", "#6699CC", "#AA4466"]
#: colour of cells without a call (unknown, unlabelled, missing)
MISSING = "#BBBBBB"
MISSING_NAMES = {"unknown", "nan", "none", "", "unlabelled", "unlabeled", "na"}
#: inches a report picture may be wide: the report's column at a 1,400-px-wide window (96 px
#: per inch); a browser shrinks wider pictures, and their 10-point legends below slide size
PAGE_WIDTH = 13.5
#: categories up to which the palette is colour-blind safe (names are written on the
#: picture beyond this)
SAFE_UP_TO = 12


def is_missing(name: Any) -> bool:
    """Whether a category means "no call" (drawn light grey, under the others)."""
    return str(name).strip().lower() in MISSING_NAMES


#: how far apart (RGB distance, 0-1 scale) a colour must be from every avoided one
APART = 0.2


def palette(n: int, avoid: Iterable[str] = ()) -> list[str]:
    """``n`` distinct colours (see the module docstring for which palette); with ``avoid``,
    none within `APART` of those (e.g. the labels' colours, for the clusters): from the
    Okabe-Ito, Tol and tab20 colours in that order, repeated where they run out."""
    avoid = [str(a) for a in avoid]
    if avoid:
        return _apart(n, avoid)
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    if n <= len(TOL_12):
        return TOL_12[:n]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    greys = {"#7f7f7f", "#c7c7c7", "#636363", "#969696", "#bdbdbd", "#d9d9d9"}  # = unknown
    colours = [h for name in ("tab20", "tab20b", "tab20c")
               for h in (to_hex(c) for c in colormaps[name].colors) if h not in greys]
    return [colours[i % len(colours)] for i in range(n)]


def _apart(n: int, avoid: list[str]) -> list[str]:
    """``n`` colours of the pool (Okabe-Ito, Tol, tab20), each `APART` from the ``avoid``
    colours, grey and one another, taken greedily; the distance is halved where the pool
    runs out, and the colours repeat where even that is not enough."""
    import numpy as np
    from matplotlib.colors import to_rgb

    pool = list(dict.fromkeys([*OKABE_ITO, *TOL_12, *palette(54)]))
    taken = [np.array(to_rgb(c)) for c in [*avoid, MISSING]]
    chosen: list[str] = []
    for apart in (APART, APART / 2, APART / 4):
        for c in pool:
            rgb = np.array(to_rgb(c))
            if len(chosen) < n and c not in chosen and \
                    min(np.linalg.norm(t - rgb) for t in taken) > apart:
                chosen.append(c)
                taken.append(rgb)
    chosen = chosen or palette(n)
    return [chosen[i % len(chosen)] for i in range(n)]


def category_colors(*groups: Iterable[Any], avoid: Iterable[str] = ()) -> dict[str, str]:
    """One colour per category name over every column drawn with it (e.g. known labels and
    predicted labels), in first-seen order, none like the ``avoid`` colours; "unknown"-like
    names get `MISSING`."""
    names: list[str] = []
    for group in groups:
        for name in group:
            s = str(name)
            if s not in names:
                names.append(s)
    real = [s for s in names if not is_missing(s)]
    colours = dict(zip(real, palette(len(real), avoid), strict=True))
    colours.update({s: MISSING for s in names if is_missing(s)})
    return colours


#: distinct values above which a numeric column of integers is drawn as a colour scale
#: (fewer: codes of categories, as labels often are)
MAX_INTEGER_CODES = 30


def is_continuous(values: Any) -> bool:
    """Whether a column is drawn as a colour scale rather than as categories: numbers (not
    categorical, not booleans) that are not all integers, or integers with more than
    `MAX_INTEGER_CODES` distinct values (e.g. counts per cell)."""
    import numpy as np
    import pandas as pd

    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s) \
            or pd.api.types.is_bool_dtype(s):
        return False
    x = s.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    return bool(np.any(x != np.round(x)) or len(np.unique(x)) > MAX_INTEGER_CODES)


def categories(values: Any) -> list[str]:
    """The categories of a column as strings, in their categorical order (else sorted,
    numerically where they are numbers)."""
    import pandas as pd

    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.astype(str))
        return [str(c) for c in s.cat.categories if str(c) in present]
    found = sorted({str(v) for v in s})
    with contextlib.suppress(ValueError):
        return sorted(found, key=float)
    return found


#: matplotlib settings of every geovae picture: type a slide can show
STYLE = {"font.size": 11, "axes.titlesize": 13, "axes.titleweight": "bold",
         "axes.labelsize": 11, "legend.fontsize": 10, "legend.title_fontsize": 11,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.facecolor": "white",
         "savefig.facecolor": "white", "axes.spines.top": False, "axes.spines.right": False,
         "svg.fonttype": "none", "pdf.fonttype": 42}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """`STYLE` for the figures made inside (figures are made without pyplot, so a
    notebook's backend and open figures are left alone)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure outside pyplot, with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
