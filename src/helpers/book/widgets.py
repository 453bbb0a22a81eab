"""Sliders over the filter strength (σ or the median window), live in Jupyter and static in the book.

* **Static** (:func:`static_slider`): one precomputed panel per value — a caption (``widgets.HTML``) and a
  PNG rendered from a matplotlib ``Figure`` (``widgets.Image``) — in a ``widgets.Stack`` whose
  ``selected_index`` is ``jslink``-ed to a ``SelectionSlider.index``. The link runs in the browser, so the
  slider works in the built book with no kernel. :func:`blur_panels` makes the panels of the filter chapters,
  :func:`defended_panels` those of the results chapter.
* **Live** (:func:`live_slider`): a kernel-side slider; moving it blurs sample images with the chosen value,
  loads (or trains, cached) the defended model nearest that value with :func:`helpers.training.train.train_model`,
  re-predicts, and attacks the samples. Its ``update(value)`` returns the panel as a dict, so tests call it.

Every caption starts with ``<span class="panel-value" data-value="V">``, ``V`` being the slider's label
for that panel; the browser test checks that the shown panel matches the slider.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import keras
import numpy as np
from ipywidgets.widgets.widget_link import Link
from matplotlib.figure import Figure

from helpers.attacks.attack import targeted_attack
from helpers.book.plots import show_image, softmax, to_png
from helpers.core.validate import check_float, check_images, check_int, check_labels
from helpers.defences.filters import Defence, filter_kind, study_grid
from helpers.studies.evaluate import AttackSummary, clean_accuracy, predict_logits, random_targets
from helpers.training.data import Dataset

PANEL_CLASS = "panel-value"
STATIC_CLASS = "static-slider"
LIVE_CLASS = "live-slider"


@dataclass
class Panel:
    """One precomputed slider position: the slider's label for it, a caption (HTML) and a PNG figure."""

    value: str
    html: str
    png: bytes


@dataclass
class StaticSlider:
    """A SelectionSlider whose ``index`` drives a Stack of panels in the browser (``jslink``)."""

    widget: widgets.VBox
    slider: widgets.SelectionSlider
    stack: widgets.Stack
    link: Link

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


@dataclass
class LiveSlider:
    """A kernel-side slider; ``update(value)`` recomputes the panel (also called when the slider moves)."""

    widget: widgets.VBox
    slider: widgets.FloatSlider | widgets.IntSlider
    update: Callable[[float], dict[str, Any]]
    models: dict[str, keras.Model] = field(default_factory=dict)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------------- values


def grid_specs(kind: str, values: Sequence[float]) -> list[str]:
    """Defence specs of one filter kind: ``grid_specs("gaussian", [0, 1.5])`` → ['none', 'gaussian:1.5']."""
    spec = filter_kind(kind)
    if not isinstance(values, (list, tuple)) or not values:
        raise TypeError(f"values: expected a non-empty list of {spec.symbol} values, got {values!r}")
    return [str(d) for d in sorted(study_grid({kind: values}), key=lambda d: d.slider_value(kind))]


def spec_value(spec: str | Defence, *, kind: str) -> float:
    """The slider value of a spec: its parameter, or the kind's identity value (σ 0, window 1) for 'none'."""
    return Defence.parse(spec).slider_value(kind)


def value_label(spec: str | Defence, *, kind: str) -> str:
    """The slider's label of a spec: '1.5' for 'gaussian:1.5', '0' for 'none' (σ), '1' for 'none' (median)."""
    return f"{spec_value(spec, kind=kind):g}"


def nearest_spec(value: float, specs: Sequence[str], *, kind: str) -> str:
    """The spec of ``specs`` whose σ (or window) is nearest ``value`` (ties: the smaller one)."""
    value = check_float("value", value, minimum=0.0)
    if not specs:
        raise ValueError("specs: empty; expected at least one defence spec")
    return min(specs, key=lambda spec: (abs(spec_value(spec, kind=kind) - value), spec_value(spec, kind=kind)))


def caption(name: str, value: str, lines: Sequence[str]) -> str:
    """HTML caption of a panel; the first element carries the slider value for the browser test."""
    head = f'<span class="{PANEL_CLASS}" data-value="{html.escape(value)}"><b>{html.escape(name)}</b></span>'
    return "<div>" + "<br>".join([head, *lines]) + "</div>"


# ---------------------------------------------------------------------------------------------- static


def static_slider(panels: Sequence[Panel], *, description: str, width: str = "520px") -> StaticSlider:
    """A slider over precomputed panels that works without a kernel (Stack.selected_index ⇄ slider.index)."""
    if not isinstance(panels, (list, tuple)) or not panels or not all(isinstance(p, Panel) for p in panels):
        raise TypeError(f"panels: expected a non-empty list of widgets.Panel, got {type(panels).__name__}")
    labels = [p.value for p in panels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"panels: the slider labels must be distinct, got {labels}")
    if not isinstance(description, str):
        raise TypeError(f"description: expected a string, got {type(description).__name__}")
    slider = widgets.SelectionSlider(
        options=[(label, i) for i, label in enumerate(labels)], value=0, description=description,
        continuous_update=True, layout=widgets.Layout(width=width),
    )
    pages = [widgets.VBox([widgets.HTML(p.html), widgets.Image(value=p.png, format="png")]) for p in panels]
    stack = widgets.Stack(pages, selected_index=0)
    link = widgets.jslink((slider, "index"), (stack, "selected_index"))
    box = widgets.VBox([slider, stack])
    box.add_class(STATIC_CLASS)
    return StaticSlider(widget=box, slider=slider, stack=stack, link=link)


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def blur_panels(
    model: keras.Model,
    transfer: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    images: np.ndarray,
    labels: np.ndarray,
    adversarial: np.ndarray,
    targets: np.ndarray,
    l2: np.ndarray,
    class_names: Sequence[str],
    n_show: int = 4,
    dpi: int = 72,
) -> list[Panel]:
    """One panel per filter of ``transfer`` (the rows of :func:`helpers.studies.evaluate.filter_transfer`).

    Each panel shows the first ``n_show`` images and their adversarial versions (made against the
    *undefended* ``model``), both blurred with that filter, with the undefended model's prediction and
    confidence and each example's ‖δ‖₂; the caption gives the rows' accuracy and restored shares.
    """
    symbol = filter_kind(kind).symbol
    n_show = check_int("n_show", n_show, minimum=1)
    dpi = check_int("dpi", dpi, minimum=20, maximum=300)
    if not isinstance(transfer, (list, tuple)) or not transfer:
        raise TypeError("transfer: expected the non-empty list of rows returned by filter_transfer")
    images = check_images("images", images)
    adversarial = check_images("adversarial", adversarial)
    if adversarial.shape != images.shape:
        raise ValueError(f"adversarial: shape {adversarial.shape} differs from images {images.shape}")
    num_classes = len(class_names)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes)
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes)
    l2 = np.asarray(l2, dtype=np.float64)
    if l2.shape != (len(images),):
        raise ValueError(f"l2: expected {len(images)} norms, got shape {l2.shape}")
    n = min(n_show, len(images))
    panels = []
    for row in sorted(transfer, key=lambda r: spec_value(str(r["defence"]), kind=kind)):
        defence = Defence.parse(str(row["defence"]))
        value = value_label(defence, kind=kind)
        clean, adv = defence.apply(images[:n]), defence.apply(adversarial[:n])
        p_clean, p_adv = softmax(predict_logits(model, clean)), softmax(predict_logits(model, adv))
        fig = Figure(figsize=(1.55 * n + 0.5, 3.6), layout="constrained")
        axes = fig.subplots(2, n, squeeze=False)
        for i in range(n):
            top, top_adv = int(p_clean[i].argmax()), int(p_adv[i].argmax())
            show_image(axes[0, i], clean[i])
            axes[0, i].set_title(f"true {class_names[labels[i]]}: {class_names[top]} ({p_clean[i, top]:.0%})", fontsize=8,
                                 color="tab:green" if top == labels[i] else "tab:red")
            show_image(axes[1, i], adv[i])
            colour = "tab:green" if top_adv == labels[i] else "tab:red" if top_adv == targets[i] else "tab:orange"
            axes[1, i].set_title(f"target {class_names[targets[i]]}: {class_names[top_adv]} ({p_adv[i, top_adv]:.0%})",
                                 fontsize=8, color=colour)
            axes[1, i].set_xlabel(f"‖δ‖₂ = {l2[i]:.2f}", fontsize=8)
        axes[0, 0].set_ylabel("blurred", fontsize=8)
        axes[1, 0].set_ylabel("blurred adversarial", fontsize=8)
        lines = [
            f"Undefended model on the blurred clean images: {_percent(float(row['clean_accuracy']))} correct.",
            f"Blurred adversarial images: {_percent(float(row['restored']))} back to the true label, "
            f"{_percent(float(row['still_target']))} still the attack's target.",
            "Colours: green = true label, red = the attack's target, orange = another class.",
        ]
        name = f"{symbol} = {value}" + (" (no filter)" if defence.is_none else "")
        panels.append(Panel(value=value, html=caption(name, value, lines), png=to_png(fig, dpi=dpi)))
    return panels


def defended_panels(
    attacks: Mapping[str, tuple[keras.Model, AttackSummary]],
    images: np.ndarray,
    *,
    accuracy: Mapping[str, float],
    class_names: Sequence[str],
    n_show: int = 2,
    amplify: float = 10.0,
    dpi: int = 72,
) -> list[Panel]:
    """One panel per defended model: original / adversarial / difference of ``n_show`` attacked images.

    ``attacks`` maps a defence spec to its model and :func:`helpers.studies.evaluate.attack_evaluation` summary,
    whose ``indices`` point into ``images``. The same images are shown for every model when all attacks
    succeeded on them; otherwise each model shows its own first successes.
    """
    from helpers.book.plots import attack_examples

    if not isinstance(attacks, Mapping) or not attacks:
        raise TypeError("attacks: expected a non-empty mapping from defence spec to (model, AttackSummary)")
    n_show = check_int("n_show", n_show, minimum=1)
    dpi = check_int("dpi", dpi, minimum=20, maximum=300)
    amplify = check_float("amplify", amplify, minimum=0.0, strict_minimum=True)
    images = check_images("images", images)
    missing = [spec for spec in attacks if spec not in accuracy]
    if missing:
        raise ValueError(f"accuracy: no clean accuracy given for {missing}")
    successes = {spec: set(s.indices[s.result.success].tolist()) for spec, (_, s) in attacks.items()}
    common = sorted(set.intersection(*successes.values()))[:n_show]
    panels = []
    for spec, (model, summary) in attacks.items():
        picked = common if len(common) == n_show else sorted(successes[spec])[:n_show]
        value = Defence.parse(spec).label
        lines = [
            f"Clean test accuracy {_percent(accuracy[spec])}; the attack reached its target on "
            f"{_percent(summary.success_rate)} of {summary.n_attacked} images, mean ‖δ‖₂ = {summary.mean_l2:.2f}.",
        ]
        if picked:
            rows = np.searchsorted(summary.indices, picked)
            clean, adv = images[picked], summary.result.adversarial[rows]
            fig = attack_examples(clean, adv, softmax(predict_logits(model, clean)), softmax(predict_logits(model, adv)),
                                  summary.targets[rows], class_names, amplify=amplify, title=value)
            lines.append("Shown: " + ", ".join(f"‖δ‖₂ = {d:.2f}" for d in summary.result.l2[rows]) + ".")
        else:
            fig = Figure(figsize=(6.6, 1.0))
            fig.text(0.5, 0.5, f"{value}: no successful attack to show", ha="center", va="center")
        panels.append(Panel(value=value, html=caption(value, value, lines), png=to_png(fig, dpi=dpi)))
    return panels


# ---------------------------------------------------------------------------------------------- live


def live_slider(
    data: Dataset,
    *,
    kind: str,
    grid: Sequence[float],
    arch: str,
    epochs: int,
    batch_size: int,
    train_seed: int,
    step: float = 0.1,
    max_steps: int = 1000,
    n_show: int = 3,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    dpi: int = 72,
    compute_now: bool = False,
) -> LiveSlider:
    """A slider that recomputes everything in the kernel for the chosen σ (``kind="gaussian"``) or window.

    ``update(value)``: blur the first ``n_show`` test images with exactly ``value``; take the defended model
    whose filter (in ``grid``) is nearest — ``train_model(arch, data, defence=spec, epochs=epochs,
    batch_size=batch_size, seed=train_seed)``, loaded from ``cache_dir`` when the training chapter already
    trained it, trained otherwise; predict the images with it (it applies its own filter); attack them
    towards seeded random wrong classes; and show prediction, confidence, the adversarial images and ‖δ‖₂.
    Nothing is computed until the slider moves, unless ``compute_now``.
    """
    from helpers.training.train import train_model

    if not isinstance(data, Dataset):
        raise TypeError(f"data: expected a helpers.training.data.Dataset, got {type(data).__name__}")
    filter_spec = filter_kind(kind)
    specs = grid_specs(kind, grid)
    n_show = check_int("n_show", n_show, minimum=1, maximum=len(data.x_test))
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    dpi = check_int("dpi", dpi, minimum=20, maximum=300)
    images, labels = data.x_test[:n_show], data.y_test[:n_show]
    targets = random_targets(labels, num_classes=data.num_classes, seed=seed)
    top = max(spec_value(s, kind=kind) for s in specs)
    low, step_size = filter_spec.identity, filter_spec.slider_step
    if float(step_size).is_integer():
        slider = widgets.IntSlider(value=int(low), min=int(low), max=max(int(top), int(low + step_size)), step=int(step_size),
                                   description=filter_spec.symbol, continuous_update=False)
    else:
        slider = widgets.FloatSlider(value=low, min=low, max=max(top, low + step_size), step=step_size,
                                     description=filter_spec.symbol, continuous_update=False)
    caption_widget = widgets.HTML("<i>Move the slider: each position blurs, predicts and attacks in the kernel.</i>")
    image_widget = widgets.Image(format="png")
    models: dict[str, keras.Model] = {}
    accuracies: dict[str, float] = {}

    def model_for(spec: str) -> keras.Model:
        if spec not in models:
            models[spec] = train_model(arch, data, defence=spec, epochs=epochs, batch_size=batch_size, seed=train_seed,
                                       cache_dir=cache_dir, verbose=0)
            accuracies[spec] = clean_accuracy(models[spec], data.x_test, data.y_test)
        return models[spec]

    def update(value: float) -> dict[str, Any]:
        exact = _exact_defence(kind, value)  # checked before any model is loaded or trained
        spec = nearest_spec(float(value), specs, kind=kind)
        panel = _live_panel(float(value), exact, kind=kind, model=model_for(spec), spec=spec, accuracy=accuracies[spec], images=images,
                            labels=labels, targets=targets, step=step, max_steps=max_steps, class_names=data.class_names, dpi=dpi)
        caption_widget.value, image_widget.value = panel["html"], panel["png"]
        return panel

    slider.observe(lambda change: update(change["new"]), names="value")
    box = widgets.VBox([slider, caption_widget, image_widget])
    box.add_class(LIVE_CLASS)
    live = LiveSlider(widget=box, slider=slider, update=update, models=models)
    if compute_now:
        update(slider.value)
    return live


def _exact_defence(kind: str, value: float) -> Defence:
    value = check_float("value", value, minimum=0.0, maximum=64.0)
    try:
        return Defence.of(kind, value)
    except ValueError as error:
        raise ValueError(f"value: {str(error).removeprefix('defence: ')}") from None


def _live_panel(value: float, exact: Defence, *, kind: str, model: keras.Model, spec: str, accuracy: float, images: np.ndarray,
                labels: np.ndarray, targets: np.ndarray, step: float, max_steps: int, class_names: Sequence[str], dpi: int
                ) -> dict[str, Any]:
    """One position of the live slider: blur with exactly ``value``, predict and attack with the nearest model."""
    filter_spec = filter_kind(kind)
    blurred = exact.apply(images)
    probs = softmax(predict_logits(model, images))
    attack = targeted_attack(model, images, targets, step=step, max_steps=max_steps, progress=False)
    probs_adv = softmax(predict_logits(model, attack.adversarial))
    panel = {
        "value": value,
        "spec": spec,
        "model_value": spec_value(spec, kind=kind),
        "accuracy": accuracy,
        "labels": labels.tolist(),
        "predictions": probs.argmax(1).tolist(),
        "confidences": probs.max(1).tolist(),
        "targets": targets.tolist(),
        "adversarial_predictions": probs_adv.argmax(1).tolist(),
        "success": attack.success.tolist(),
        "l2": attack.l2.tolist(),
        "blurred": blurred,
        "adversarial": attack.adversarial,
    }
    fig = _live_figure(panel, images, class_names, symbol=filter_spec.symbol)
    panel["png"] = to_png(fig, dpi=dpi)
    panel["html"] = caption(f"{filter_spec.symbol} = {value:g}", f"{value:g}", [
        f"Defended model: the nearest trained filter, {Defence.parse(spec).label} (clean test accuracy "
        f"{_percent(accuracy)}). Left: the images blurred with {filter_spec.symbol} = {value:g}; "
        "the model applies its own filter to the raw images.",
        f"Attack ({step:g} per step, at most {max_steps} steps): reached the target on "
        f"{int(attack.success.sum())} of {len(images)}, ‖δ‖₂ = " + ", ".join(f"{d:.2f}" for d in attack.l2) + ".",
    ])
    return panel


def _live_figure(panel: Mapping[str, Any], images: np.ndarray, class_names: Sequence[str], *, symbol: str,
                 amplify: float = 10.0) -> Figure:
    n = len(images)
    fig = Figure(figsize=(6.0, 2.0 * n), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        pred, target, adv_pred = panel["predictions"][i], panel["targets"][i], panel["adversarial_predictions"][i]
        show_image(axes[i, 0], panel["blurred"][i])
        axes[i, 0].set_title(f"{symbol} = {panel['value']:g}: {class_names[pred]} ({panel['confidences'][i]:.0%})", fontsize=8,
                             color="tab:green" if pred == panel["labels"][i] else "tab:red")
        show_image(axes[i, 1], panel["adversarial"][i])
        axes[i, 1].set_title(f"→ {class_names[target]}: {class_names[adv_pred]}" + ("" if panel["success"][i] else " ✗"),
                             fontsize=8)
        show_image(axes[i, 2], 0.5 + amplify * (panel["adversarial"][i] - images[i]))
        axes[i, 2].set_title(f"δ ×{amplify:g}, ‖δ‖₂ = {panel['l2'][i]:.2f}", fontsize=8)
    return fig
