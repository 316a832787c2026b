"""The look shared by every figure: one fixed colour per method, figure creation, atomic PNG saving.

matplotlib is optional (the ``report`` extra), so it is imported inside ``new_figure`` only;
importing this module costs nothing. Figures are built with the object-oriented API and the
Agg canvas directly (no ``pyplot``), so no global backend state is touched.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from tidal.io import atomic_path

__all__ = ["DPI", "METHOD_COLORS", "figures_available", "method_color", "new_figure", "save_figure"]

DPI = 120  # dots per inch of the saved PNGs

# A method keeps its colour in every figure and every run, however many methods a run has.
METHOD_COLORS: dict[str, str] = {
    "random": "#4d4d4d",  # dark grey: the reference
    "tidal-entropy": "#d62728",  # TiDAL in reds and oranges
    "tidal-margin": "#ff7f0e",
    "tidal-exact": "#8c1a3c",
    "tidal-margin-self": "#c49c00",
    "tidal-detached-entropy": "#f7a6a6",  # issue 20's TD variants: lighter shades of TiDAL's
    "tidal-detached-margin": "#ffcc80",
    "tidal-calibrated-entropy": "#a0522d",
    "tidal-calibrated-margin": "#e0a030",
    "tidal-diverse-entropy": "#ff4f9a",
    "tidal-diverse-margin": "#8a4b00",
    "tidal-detached-diverse-entropy": "#ffa0c8",
    "entropy": "#1f77b4",  # the snapshot counterparts in blues
    "margin": "#17becf",
    "least-confidence": "#9467bd",
    "bald": "#2ca02c",
    "badge": "#98df8a",
    "coreset": "#8c564b",
    "core-set": "#8c564b",
    "lloss": "#e377c2",
    "learning-loss": "#e377c2",
    "cal": "#bcbd22",
    "cal-uncertain": "#dbdb8d",  # the lighter olive of its parent
    "vaal": "#393b79",
    "ta-vaal": "#637939",
}
# Methods not listed above draw from this palette by a hash of their name (stable across runs).
_EXTRA = ["#6b6ecf", "#b5cf6b", "#e7969c", "#de9ed6", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#843c39",
          "#7b4173"]


def method_color(method: str) -> str:
    """The colour of ``method``: fixed for known names, a hash-chosen one otherwise."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA[zlib.crc32(method.encode()) % len(_EXTRA)]


def figures_available() -> bool:
    """Whether matplotlib is installed (``pip install -e '.[report]'`` in the checkout)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.2, share: bool = False,
               width_ratios: list[float] | None = None) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` on an Agg canvas and its axes (an array when there are several).

    ``width`` and ``height`` are inches per panel; ``share``: every panel has the same x and y
    axes (small multiples); ``width_ratios``: relative panel widths.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, sharex=share, sharey=share, width_ratios=width_ratios)
    return fig, axes


def _wrap_to_fit(fig: Any) -> None:
    """Break the figure's and the panels' titles and axis labels into lines so that each fits
    the figure (a long ``suptitle`` over two small panels, a ``supylabel`` taller than one row)."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    texts = [getattr(fig, name, None) for name in ("_suptitle", "_supxlabel", "_supylabel")]
    texts += [t for ax in fig.axes if ax.get_visible() for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    for t in texts:
        if t is None or not t.get_visible() or not t.get_text() or "\n" in t.get_text():
            continue
        vertical = round(t.get_rotation()) % 180 == 90
        extent = t.get_window_extent(renderer)
        size, room = (extent.height, fig.bbox.height) if vertical else (extent.width, fig.bbox.width)
        if size > 0.92 * room:
            text = t.get_text()
            t.set_text("\n".join(textwrap.wrap(text, max(12, int(len(text) * 0.85 * room / size)))))


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temporary file, then ``os.replace``).

    Titles and labels longer than the figure are wrapped first, and the PNG is cut to the
    bounding box of everything drawn (``bbox_inches="tight"``), so no text is clipped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _wrap_to_fit(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path
