"""The residual regressions' two slide figures, drawn from the stored predictions and metrics.

- `plot_roc_curves`: "Residual Regression 1: ROC Curve", one panel per target, every model's
  test ROC curve with its AUC and CI in the legend;
- `plot_accuracy_bars`: "Residual Regression 2: Results", test accuracy per model and
  target with bootstrap CIs as error bars and the majority-class accuracy as a dashed line.

Figures are matplotlib `Figure` objects made without pyplot (no global state), for Kedro's
MatplotlibDataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from medclip_residuals.models.evaluation import MODEL_LABELS, scores_on_test_split

MODEL_COLORS = {"image": "#7f7f7f", "residual_1": "#1f77b4", "residual_2": "#d62728"}


def _grid(n: int) -> tuple[int, int]:
    columns = min(3, n)
    return (n + columns - 1) // columns, columns


def plot_roc_curves(
    predictions: pd.DataFrame, metrics: dict[str, Any], models: Sequence[str], title: str
) -> Figure:
    """One ROC panel per target of `metrics` with every model's curve and AUC [CI] in the legend."""
    targets = list(metrics["targets"])
    rows, columns = _grid(len(targets))
    figure = Figure(figsize=(4.2 * columns, 4.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[len(targets):]:
        ax.set_visible(False)
    for ax, target in zip(axes.ravel(), targets, strict=False):
        y, scores, _ = scores_on_test_split(predictions, target, models)
        for model in models:
            fpr, tpr, _ = roc_curve(y, scores[model])
            auc = metrics["targets"][target]["auc"][model]
            ax.plot(fpr, tpr, lw=1.8, label=f"{MODEL_LABELS[model]}\nAUC {auc['estimate']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]")
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey")
        ax.set(title=f"{target} (test n={len(y)}, {int(y.sum())} positive)", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=7)
    figure.suptitle(title)
    return figure


def plot_accuracy_bars(metrics: dict[str, Any], models: Sequence[str], title: str) -> Figure:
    """Test accuracy per model and target of `metrics` (bars with CI error bars), and each
    target's majority-class accuracy as a dashed line."""
    targets = list(metrics["targets"])
    figure = Figure(figsize=(max(6.0, 1.0 + 2.2 * len(targets)), 4.6), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        x = np.arange(len(targets)) + (j - (len(models) - 1) / 2) * width
        blocks = [metrics["targets"][t]["accuracy"][model] for t in targets]
        heights = np.array([b["estimate"] for b in blocks])
        errors = np.array([[h - b["low"], b["high"] - h] for h, b in zip(heights, blocks, strict=True)]).T
        bars = ax.bar(x, heights, width, yerr=np.clip(errors, 0, None), capsize=3, label=MODEL_LABELS[model], color=MODEL_COLORS[model])
        ax.bar_label(bars, labels=[f"{h:.2f}" for h in heights], fontsize=7, padding=2)
    for i, target in enumerate(targets):
        majority = metrics["targets"][target]["majority_class_accuracy"]
        ax.hlines(majority, i - 0.45, i + 0.45, colors="black", linestyles="dashed", lw=1,
                  label="majority class" if i == 0 else None)
    ax.set_xticks(np.arange(len(targets)), [f"{t}\n(n={metrics['targets'][t]['n_test']})" for t in targets])
    ax.set(ylabel="test accuracy", ylim=(0, 1.08), title=title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False)
    return figure
