"""Figures used by several chapters. Each function returns a matplotlib Figure and sets no global state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

# One colour per filter setting, the same in every panel and chapter: grey for no filter, blues darkening with σ for
# the Gaussian, oranges darkening with the window for the median, a fixed colour per kind for other registered kinds.
_KIND_MAPS = {"gaussian": ("Blues", 3.0, 0.0), "median": ("Oranges", 9.0, 1.0)}
_OTHER_KINDS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def defence_colour(defence) -> str:
    """The colour of a defence (a ``helpers.filters.Defence`` or its spec, ``"none"``, ``"gaussian:1.5"``, ``"median:3"``)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from helpers.defences.filters import Defence

    d = Defence.parse(defence)
    if d.is_none:
        return "#555555"
    if d.kind in _KIND_MAPS:
        cmap, top, bottom = _KIND_MAPS[d.kind]
        share = min(max((float(d.value) - bottom) / (top - bottom), 0.0), 1.0)
        return to_hex(colormaps[cmap](0.35 + 0.6 * share))
    return _OTHER_KINDS[sum(map(ord, d.kind)) % len(_OTHER_KINDS)]


def show_image(ax, image: np.ndarray) -> None:
    """Draw one [0, 1] image (grey for one channel) on ``ax`` without ticks."""
    image = np.clip(image, 0.0, 1.0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def attack_examples(
    images: np.ndarray,
    adversarial: np.ndarray,
    probs_clean: np.ndarray,
    probs_adv: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    *,
    amplify: float = 10.0,
    title: str = "",
) -> Figure:
    """Rows of (original with its top class / adversarial with the target / difference ×amplify), as in the paper."""
    n = len(images)
    fig = Figure(figsize=(6.6, 2.3 * n + (0.3 if title else 0)), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for row in range(n):
        top = int(probs_clean[row].argmax())
        target = int(targets[row])
        show_image(axes[row, 0], images[row])
        axes[row, 0].set_title(f"{class_names[top]} ({probs_clean[row, top]:.0%})", fontsize=9)
        show_image(axes[row, 1], adversarial[row])
        hit = "" if probs_adv[row].argmax() == target else " ✗"
        axes[row, 1].set_title(f"→ {class_names[target]} ({probs_adv[row, target]:.0%}){hit}", fontsize=9)
        delta = adversarial[row] - images[row]
        show_image(axes[row, 2], 0.5 + amplify * delta)
        axes[row, 2].set_title(f"δ ×{amplify:g}, ‖δ‖₂={np.linalg.norm(delta):.2f}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def image_grid(rows: Sequence[np.ndarray], row_labels: Sequence[str], col_labels: Sequence[str], *, size: float = 1.3) -> Figure:
    """A grid of images: one row per array in ``rows`` (each N×H×W×C), labelled."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig = Figure(figsize=(size * n_cols + 0.8, size * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            show_image(axes[r, c], row[c])
            if r == 0:
                axes[r, c].set_title(col_labels[c], fontsize=8)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    return fig


def line_plot(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    errors: dict[str, Sequence[float]] | None = None,
    title: str = "",
    ax=None,
) -> Figure:
    fig = ax.figure if ax is not None else Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = ax if ax is not None else fig.subplots()
    for name, values in series.items():
        err = None if errors is None else errors.get(name)
        ax.errorbar(x, values, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def show(fig: Figure, *, dpi: int = 110) -> None:
    """Display a Figure in a notebook as a PNG (works with any matplotlib backend)."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")  # nothing cut off at the edges
    display(Image(buffer.getvalue()))


def stack_figures(figures: Sequence[Figure], *, dpi: int = 110) -> Figure:
    """Several figures as one, each under the previous: one numbered figure where the number of blocks depends on
    the run (one per architecture the attack fooled, say)."""
    import io

    from matplotlib.image import imread

    images = []
    for figure in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        buffer.seek(0)
        images.append(imread(buffer))
    if not images:
        raise ValueError("figures: expected at least one figure")
    heights = [image.shape[0] / dpi for image in images]
    fig = Figure(figsize=(max(image.shape[1] for image in images) / dpi, sum(heights)))
    axes = fig.subplots(len(images), 1, squeeze=False, gridspec_kw={"height_ratios": heights, "hspace": 0})[:, 0]
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    for ax, image in zip(axes, images, strict=True):
        ax.imshow(image)
        ax.set_axis_off()
    return fig


def to_png(fig: Figure, *, dpi: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
