"""The plots of `tinydistill reproduce curves`: F1 against labels, and F1 against latency (the `reproduce` extra).

matplotlib is imported when a plot is drawn, not with this module: it is the `reproduce` extra, and the tables
need it only for the curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinydistill.errors import TinyDistillError
from tinydistill.paper.setup import TITLES, model_name


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TinyDistillError("the curves need matplotlib: pip install 'matplotlib>=3.8'") from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    return fig


def plot_curves(rows: list[dict], sizes: Sequence[int], title: str, path: Path) -> None:
    """One line per model of `rows` (summary rows of one dataset): mean ± std score against labels, to `path`."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["labeled"], r["headline"]) for r in rows if r["model"] == model)
        ax.errorbar([n for n, _ in points], [100 * h["mean"] for _, h in points], [100 * h["std"] for _, h in points],
                    marker="o", capsize=3, label=model_name(model), linestyle="--" if model.endswith("-nods") else "-")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="labelled examples (T-train)", ylabel="test F1 x 100", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_scatter(points: list[dict], datasets: Sequence[str], path: Path) -> None:
    """One panel per dataset: each model's score against its batch-1 latency (log scale), to `path`."""
    fig = _figure(5 * len(datasets), 4)
    for ax, ds in zip(np.atleast_1d(fig.subplots(1, len(datasets))), datasets):
        for r in (r for r in points if r["dataset"] == ds):
            x, y = r["latency_ms"]["mean"], 100 * r["headline"]["mean"]
            ax.scatter([x], [y], marker="s" if r["model"] == "teacher" else "o")
            ax.annotate(model_name(r["model"]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.tick_params(axis="x", which="minor", labelbottom=False)
        ax.set(xlabel="CPU latency, batch 1 (ms)", ylabel="test F1 x 100", title=TITLES.get(ds, ds))
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")


