"""Chapter 1's figures: how many steps the attack took, how visible its changes are, the most and the typically
visible ones, and one example per architecture."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from helpers.book.plots import attack_examples, image_grid, softmax, stack_figures
from helpers.studies.evaluate import JND
from helpers.studies.findings import worst_and_middle


def steps_figure(steps: np.ndarray, success: np.ndarray) -> Figure:
    """Histogram of the steps each successful attack took to reach its target."""
    fig = Figure(figsize=(5.2, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(steps[success], bins=30, color="tab:blue")
    if not success.any():
        ax.text(0.5, 0.5, "no attack reached its target", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("steps to reach the target")
    ax.set_ylabel("images")
    return fig


def visibility_figure(visible: Mapping[str, np.ndarray], success: np.ndarray) -> Figure:
    """Histograms of the successful changes' RMS per pixel, largest pixel change and share of pixels above 8/255."""
    fig = Figure(figsize=(9, 2.8), layout="constrained")
    panels = (("rms", "RMS change per pixel"), ("linf", "largest pixel change (L∞)"), ("share_above_jnd", "share of pixels changed > 8/255"))
    for ax, (key, label) in zip(fig.subplots(1, 3), panels, strict=True):
        ax.hist(visible[key][success], bins=30, color="tab:blue")
        if key != "share_above_jnd":
            ax.axvline(JND, color="tab:red", ls=":", lw=1.5, label="8/255, C1's limit")
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("digits", fontsize=9)
    return fig


def extremes_figure(images: np.ndarray, adversarial: np.ndarray, rms: np.ndarray, success: np.ndarray, *, n: int = 10,
                    labels: tuple[str, str] = ("ten worst", "ten median")) -> Figure:
    """The ``n`` most visible and ``n`` median successful changes (``labels``): the digit and its change δ × 10 (grey is 0)."""
    worst, middle = worst_and_middle(rms, success, n=n)
    shown = [images[worst], 0.5 + 10 * (adversarial[worst] - images[worst]), images[middle],
             0.5 + 10 * (adversarial[middle] - images[middle])]
    return image_grid([np.clip(rows, 0, 1) for rows in shown], [labels[0], "δ ×10", labels[1], "δ ×10"],
                      [f"{rms[i]:.3f}" for i in worst], size=0.9)


def architecture_examples_figure(examples: Mapping[str, tuple]) -> Figure:
    """One successful attack per architecture (:class:`helpers.studies.architectures.ArchitectureStudy` examples)."""
    return stack_figures([attack_examples(image, adv, softmax(clean), softmax(attacked), target, names, title=arch)
                          for arch, (image, adv, clean, attacked, target, names) in examples.items()])
