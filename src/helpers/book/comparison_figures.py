"""Chapter 7's figures: randomized smoothing's certified and attacked accuracy (``07_trusted``), and every defence's
robust against clean accuracy (``07_comparison``). Each function returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def smoothing_figure(radii: np.ndarray, budgets: Sequence[float], certified: Mapping[float, np.ndarray],
                     attacked: Mapping[float, np.ndarray]) -> Figure:
    """Per noise level σ: certified accuracy against the radius (line), attacked accuracy at the budgets (markers)."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, s in enumerate(certified):
        color = f"C{i}"
        ax.plot(radii, certified[s], color=color, label=f"σ = {s:g}: certified")
        ax.plot(budgets, attacked[s], "o--", color=color, ms=5, label=f"σ = {s:g}: attacked (EOT-PGD)")
    ax.set_xlabel("L2 radius r (certified) or budget ε (attacked)")
    ax.set_ylabel("accuracy (mean over seeds)")
    ax.set_title("Randomized smoothing: what is proved, and what an attack leaves", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def comparison_figure(
    *, names: Mapping[str, str], lines: Mapping[str, pd.DataFrame], smoothed: Sequence[str], budgets: Sequence[float],
    strong_accuracy: Mapping[str, np.ndarray], clean: Mapping[str, float], certified_accuracy: Mapping[str, np.ndarray],
) -> Figure:
    """Left: each defence's robust accuracy against ε (``lines``: budget, accuracy; markers at ``budgets``); right:
    robust (and certified, open) accuracy at the strong budgets against clean accuracy."""
    fig = Figure(figsize=(9.6, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, key in enumerate(names):
        color = f"C{i}"
        part = lines[key]
        if len(part):
            left.plot(part["budget"].astype(float), part["accuracy"].astype(float), color=color, lw=1.2, label=names[key])
        left.plot(budgets, strong_accuracy[key], "o" if key not in smoothed else "s--", color=color, ms=5,
                  label=None if len(part) else f"{names[key]} (attacked)")
        for b in range(1, len(budgets)):
            right.scatter(clean[key], strong_accuracy[key][b], color=color, marker="o" if b == 1 else "^", s=36,
                          label=f"{names[key]}" if b == 1 else None)
            if key in certified_accuracy:
                right.scatter(clean[key], certified_accuracy[key][b], facecolors="none", edgecolors=color,
                              marker="o" if b == 1 else "^", s=36)
    left.set_xlabel("L2 budget ε")
    left.set_ylabel("robust accuracy (mean over seeds)")
    left.grid(alpha=0.3)
    left.legend(fontsize=6)
    right.set_xlabel("clean accuracy")
    right.set_ylabel("robust accuracy at the strong budgets\n(● ε = " + f"{budgets[1]:g}"
                     + (f", ▲ ε = {budgets[-1]:g}" if len(budgets) > 2 else "") + "; open: certified)")
    right.grid(alpha=0.3)
    right.legend(fontsize=6)
    return fig
