"""Chapter 6's figures (``notebooks/06_adaptive``): the pixel sweep, the gradient maps, the robust-accuracy curves and
the C6 gains. Each function returns a matplotlib Figure; the chapter shows it with :func:`helpers.book.plots.show`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from helpers.book.plots import defence_colour
from helpers.studies.adaptive_study import Gain
from helpers.studies.verdicts import MIN_ROBUST_GAIN


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def sweep_figure(digit: np.ndarray, pixel: tuple[int, int], sweep: np.ndarray, swept: Mapping[str, np.ndarray],
                 names: Mapping[str, str]) -> Figure:
    """Left: each filter's output at ``pixel`` while the pixel is swept, and BPDA's identity; right: the digit."""
    row, col = pixel
    fig = Figure(figsize=(8.6, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for spec, values in swept.items():
        left.plot(sweep, values, label=f"{names[spec]} (forward, exact)", color=defence_colour(spec))
    left.plot(sweep, sweep, "k--", lw=1, label="what BPDA assumes (slope 1)")
    left.set_xlabel(f"input pixel ({row}, {col})")
    left.set_ylabel("filtered pixel")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.imshow(digit[..., 0], cmap="gray", vmin=0, vmax=1)
    right.plot(col, row, "o", mfc="none", mec="tab:red", ms=10)
    right.set_title("the swept pixel", fontsize=9)
    _no_ticks(right)
    return fig


def gradient_figure(digit: np.ndarray, maps: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                    names: Mapping[str, str]) -> Figure:
    """Per defended model (``maps``: its filtered digit, exact and BPDA gradients), four panels in a row."""
    fig = Figure(figsize=(2.0 * 4, 2.1 * max(len(maps), 1)), layout="constrained")
    axes = fig.subplots(max(len(maps), 1), 4, squeeze=False)
    for r, (spec, (filtered, exact, bpda)) in enumerate(maps.items()):
        panels = [(digit[..., 0], "digit", "gray", 0, 1), (filtered, f"after {names[spec]}", "gray", 0, 1)]
        for g, title in ((exact, "exact gradient"), (bpda, "BPDA gradient")):
            m = np.abs(g).max() or 1.0
            panels.append((g, f"{title}\n{np.mean(g != 0):.0%} of pixels ≠ 0", "RdBu_r", -m, m))
        for ax, (img, title, cmap, lo, hi) in zip(axes[r], panels, strict=True):
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=8)
            _no_ticks(ax)
    return fig


_STYLES = {"worst": dict(color="tab:red", lw=2.2), "exact": dict(color="tab:blue", ls="--"),
           "BPDA": dict(color="tab:green", ls="--"), "noise": dict(color="tab:gray", ls=":")}
_LABELS = {"worst": "worst case", "exact": "exact gradient", "BPDA": "BPDA", "noise": "random noise"}


def curves_figure(curves: pd.DataFrame, roles: Sequence[str], names: Mapping[str, str]) -> Figure:
    """One panel per model: robust accuracy against ε per attack (bands on the worst case and noise)."""
    fig = Figure(figsize=(3.2 * len(roles), 3.3), layout="constrained")
    axes = fig.subplots(1, len(roles), sharey=True, squeeze=False)[0]
    base = curves[(curves["model"] == "none") & (curves["attack"] == "worst")]
    for ax, spec in zip(axes, roles, strict=True):
        part = curves[curves["model"] == spec]
        for attack, style in _STYLES.items():
            c = part[part["attack"] == attack]
            if len(c) == 0 or (attack == "exact" and spec == "none"):
                continue
            ax.plot(c["budget"], c["accuracy"], marker="o", ms=3, label=_LABELS[attack], **style)
            if attack in ("worst", "noise"):
                ax.fill_between(c["budget"], c["low"], c["high"], color=style["color"], alpha=0.15)
        if spec != "none":
            ax.plot(base["budget"], base["accuracy"], color="black", lw=1, alpha=0.6, label="undefended, worst case")
        ax.set_title(f"{names[spec]}", fontsize=10)
        ax.set_xlabel("L2 budget ε")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("robust accuracy (PGD)")
    return fig


def gain_figure(gains: Mapping[str, Gain], *, statistic: str) -> Figure:
    """Each defended model's gain with its family-wise interval, against 0 and the least gain that counts."""
    fig = Figure(figsize=(6.4, 1.2 + 0.55 * max(len(gains), 1)), layout="constrained")
    ax = fig.subplots()
    for row, g in enumerate(gains.values()):
        ax.errorbar(g.effect * 100, row, xerr=[[max(g.effect - g.low, 0) * 100], [max(g.high - g.effect, 0) * 100]], fmt="o",
                    capsize=4, color="tab:red" if g.low > 0 else "tab:gray")
    ax.set_yticks(range(len(gains)), list(gains))
    ax.axvline(0, color="black", lw=1)
    ax.axvline(MIN_ROBUST_GAIN * 100, color="tab:green", ls="--", lw=1, label=f"+{MIN_ROBUST_GAIN:.0%}: the least gain that counts")
    ax.set_xlabel(f"gain in {statistic} over the undefended model,\npoints (family-wise 95 % interval)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    return fig
