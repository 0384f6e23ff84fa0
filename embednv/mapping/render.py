"""Draw the map: `map.png` (static, density-aware), and the helpers it shares with `map.html`.

PNG: up to `SCATTER_MAX_POINTS` points are drawn as small translucent dots; above that, dots
overplot into a solid blob, so the image is a per-pixel density of each cluster's colour
(datashader, histogram-equalised) or, without datashader, a log-scaled 2-D histogram.
`map.html` (interactive, offline) is written by `render_html.py` with the same cluster colours.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCATTER_MAX_POINTS = 100_000
PNG_INCHES, PNG_DPI = 12, 150  # 1800 x 1800 pixels


def palette(k: int) -> list[str]:
    """k distinct colours (tab20, tab20b, tab20c: 60 before repeating), the same in PNG and HTML."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colours = [to_hex(c) for name in ("tab20", "tab20b", "tab20c") for c in colormaps[name].colors]
    colours = colours[0::2] + colours[1::2]  # the strong shade of every pair first
    return [colours[i % len(colours)] for i in range(k)]


def _square_bounds(y: np.ndarray, pad: float = 0.03) -> tuple[float, float, float, float]:
    lo, hi = y.min(axis=0), y.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + pad) or 1.0
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def cluster_medians(y: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, 2) median position of each cluster (NaN for an empty one): where its name is drawn."""
    out = np.full((k, 2), np.nan)
    for c in range(k):
        members = y[labels == c]
        if len(members):
            out[c] = np.median(members, axis=0)
    return out


def render_png(path: Path, y: np.ndarray, labels: np.ndarray, names: Sequence[str], title: str) -> str:
    """Write the static map; returns how the points were drawn ("scatter", "datashader", "hist2d")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patheffects import withStroke

    k, n = len(names), len(y)
    colours = np.array(palette(k))
    x0, x1, y0, y1 = _square_bounds(y)
    fig = Figure(figsize=(PNG_INCHES, PNG_INCHES), dpi=PNG_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.95))
    if n <= SCATTER_MAX_POINTS:
        size = float(np.clip(30_000 / n, 0.5, 16))  # marker area: fewer points, bigger dots
        alpha = float(np.clip(3_000 / n, 0.25, 0.8))
        ax.scatter(y[:, 0], y[:, 1], c=colours[labels], s=size, alpha=alpha, linewidths=0, rasterized=True)
        how = "scatter"
    else:
        how = _density(ax, y, labels, colours, (x0, x1, y0, y1))
    for (mx, my), name in zip(cluster_medians(y, labels, k), names):
        if np.isfinite(mx):
            ax.text(
                mx,
                my,
                name,
                fontsize=7,
                ha="center",
                va="center",
                path_effects=[withStroke(linewidth=2.5, foreground="white")],
            )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    fig.savefig(path, format="png")  # explicit: `path` may be a temp name without .png
    return how


def _density(ax, y: np.ndarray, labels: np.ndarray, colours: np.ndarray, bounds: tuple) -> str:
    x0, x1, y0, y1 = bounds
    pixels = PNG_INCHES * PNG_DPI
    try:
        import datashader as ds
        import datashader.transfer_functions as tf
        import pandas as pd
    except ImportError:
        from matplotlib.colors import LogNorm

        ax.hist2d(y[:, 0], y[:, 1], bins=pixels // 3, range=[[x0, x1], [y0, y1]], norm=LogNorm(), cmap="Greys", cmin=1)
        return "hist2d"
    k = len(colours)
    frame = pd.DataFrame({"x": y[:, 0], "y": y[:, 1], "c": pd.Categorical(labels, categories=range(k))})
    # Half-resolution bins (2x2 screen pixels each) read as solid areas rather than speckle.
    canvas = ds.Canvas(plot_width=pixels // 2, plot_height=pixels // 2, x_range=(x0, x1), y_range=(y0, y1))
    agg = canvas.points(frame, "x", "y", ds.count_cat("c"))
    # eq_hist spreads the colour ramp over the density quantiles, so both the dense cores and
    # the sparse fringes of a million-point map stay visible; the colour says which cluster.
    img = tf.shade(agg, color_key=list(colours), how="eq_hist", min_alpha=110)
    ax.imshow(
        np.asarray(tf.set_background(img, "white").to_pil()),
        extent=(x0, x1, y0, y1),
        origin="upper",
        interpolation="nearest",
    )
    return "datashader"
