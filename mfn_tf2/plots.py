"""One picture of how well models verify faces: ROC curves and score histograms.

Left, the ROC curve of every model on a log false-accept axis (1e-4 to 1),
where face unlock and payment thresholds live. Right, one panel per model
with the scores of same-person and different-person pairs: the overlap is
what the threshold has to cut through, and a quantized model whose histograms
shifted against the float one shows it at a glance.

Example:
    >>> import numpy as np
    >>> labels = np.r_[np.ones(100), np.zeros(100)]
    >>> scores = np.random.default_rng(0).normal(size=200) + labels
    >>> plot_verification({"float": (scores, labels)}, "/tmp/verification.png")
"""
from __future__ import annotations

import io

import numpy as np

from mfn_tf2.fileio import write_bytes
from mfn_tf2.metrics import auc, eer, roc

# Lowest false accept rate shown; below it a few hundred pairs say nothing.
MIN_FAR = 1e-4
# Histogram bins over the common score range of all models.
BINS = 50


def _roc_panel(ax, results: dict) -> None:
    for name, (scores, labels) in results.items():
        far, tar, _ = roc(scores, labels)
        label = f"{name} (AUC {auc(scores, labels):.4f}, EER {100 * eer(scores, labels):.2f}%)"
        # FAR 0 has no place on a log axis: those points are masked.
        ax.plot(far, tar, drawstyle="steps-post", label=label)
    ax.set_xscale("log", nonpositive="mask")
    ax.set_xlim(MIN_FAR, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title("ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def _histogram_panel(ax, name: str, scores, labels, bins: np.ndarray) -> None:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    ax.hist(scores[labels], bins=bins, density=True, alpha=0.6, label="same person")
    ax.hist(scores[~labels], bins=bins, density=True, alpha=0.6, label="different people")
    ax.set_title(name, fontsize="medium")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", fontsize="small")


def plot_verification(results: dict, path) -> None:
    """Writes the ROC + histogram figure of one or several models as a PNG.

    Args:
        results: {model name: (scores (N,), labels (N,))}, higher score =
            more similar, label 1 = same person. Models may have different
            pairs.
        path: the PNG file, replaced atomically.

    Raises:
        ValueError: no model, or scores/labels a metric rejects
            (``metrics.MetricsError``).
    """
    if not results:
        raise ValueError("plot_verification needs at least one model's (scores, labels)")
    # The Agg canvas is chosen here, per figure, without touching pyplot's
    # global backend (which a notebook or GUI caller may have set).
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: keeps matplotlib out of importers
    from matplotlib.figure import Figure  # lazy: (plots is imported by evaluate, whose --help stays light)

    everything = np.concatenate([np.asarray(s, np.float64).reshape(-1)
                                 for s, _ in results.values()])
    bins = np.linspace(everything.min(), everything.max() + 1e-9, BINS + 1)
    rows = len(results)
    fig = Figure(figsize=(12, max(4.5, 2.2 * rows)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2)
    _roc_panel(fig.add_subplot(grid[:, 0]), results)
    for row, (name, (scores, labels)) in enumerate(results.items()):
        ax = fig.add_subplot(grid[row, 1])
        _histogram_panel(ax, name, scores, labels, bins)
        if row == rows - 1:
            ax.set_xlabel("score (cosine similarity)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes(str(path), buffer.getvalue())


__all__ = ["plot_verification", "MIN_FAR", "BINS"]
