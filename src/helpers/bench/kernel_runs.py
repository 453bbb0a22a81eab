"""The performance chapter's hardware sections: GFLOP/s of an attack step against ``tf.matmul`` and the op
profile, the filters' cost per training step, and the live slider's page weight and first render."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd

from helpers.bench.engine_runs import ATTACK_BATCH, BLUR_SIGMA, TRAINING_DEFENCES, TRAINING_GLUE
from helpers.bench.filter_costs import gaussian_blur_times, training_step_times
from helpers.bench.flops import (
    attack_step_flops,
    forward_flops,
    gradient_step,
    kernel_rates,
    kernel_rates_in_child,
    layer_flops,
    op_time_profile,
    random_batch,
)
from helpers.bench.timing import median, paired_ratios
from helpers.book.browser_slider import FirstRender, PageAssets, first_render_seconds, page_assets, slider_cell_html
from helpers.core import paths
from helpers.core.first_conv import replaced_convolution
from helpers.core.validate import check_int
from helpers.defences.filters import Defence

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

# --- GFLOP/s and the op profile ----------------------------------------------------------------------------

PAPER_INCEPTION_SIZE = 299  # the image size at which the paper attacks InceptionV3


@dataclass
class KernelRates:
    """GFLOP/s of ``tf.matmul`` and of both models' attack steps (this process, and with the other oneDNN
    setting in a child process when measured), and the op profile of each model's step."""

    study_arch: str
    inception_size: int
    inception_batch: int
    paper_batch: int  # InceptionV3 at the paper's PAPER_INCEPTION_SIZE px (0: not measured)
    kernel: dict[str, Any]
    profile_rows: list[dict[str, Any]]
    other: dict[str, Any] | None
    inception_step_flops: int
    study_step_flops: int

    @property
    def goal_workload(self) -> str:
        """The InceptionV3 step the goal judges: at the paper's size when it was measured, else at the book's."""
        return "inception_v3_paper" if "inception_v3_paper" in self.kernel["gflops"] else "inception_v3"

    @property
    def goal_size(self) -> int:
        """The image size of :attr:`goal_workload`, in pixels."""
        return PAPER_INCEPTION_SIZE if self.goal_workload == "inception_v3_paper" else self.inception_size

    @property
    def share(self) -> float:
        """The goal's InceptionV3 step rate as a share of ``tf.matmul``'s: the median over the rounds of each round's."""
        return median(self.share_rounds())

    def share_rounds(self, workload: str | None = None) -> list[float]:
        """An InceptionV3 step's rate over ``tf.matmul``'s, round by round (default: :attr:`goal_workload`)."""
        workload = workload or self.goal_workload
        seconds, rates = self.kernel["seconds"], self.kernel["gflops"]
        scale = rates[workload] * median(seconds[workload]) / (rates["matmul"] * median(seconds["matmul"]))
        return [scale * r for r in paired_ratios(seconds["matmul"], seconds[workload])]

    def inception_op(self, suffix: str) -> dict[str, Any] | None:
        """The first (largest) InceptionV3 profile row whose op type ends with ``suffix``."""
        return next((r for r in self.profile_rows if r["model"] == "inception_v3" and r["op"].endswith(suffix)), None)

    def record(self) -> dict[str, Any]:
        return {
            "inception_image_size": self.inception_size, "inception_batch": self.inception_batch,
            "paper_image_size": PAPER_INCEPTION_SIZE, "paper_batch": self.paper_batch, "goal_workload": self.goal_workload,
            "inception_step_gflop_per_image": self.inception_step_flops / 1e9, "this_process": self.kernel,
            "inception_share_of_matmul": self.share, "op_profile": self.profile_rows, "other_onednn_setting": self.other,
        }

    def table(self) -> Styler:
        """GFLOP/s per oneDNN setting (this process, and the child's if measured)."""
        rows = [{"oneDNN": "on" if self.kernel["onednn"] else "off", "process": "this one", **self.kernel["gflops"]}]
        if self.other and "gflops" in self.other:
            rows.append({"oneDNN": "on" if self.other["onednn"] else "off", "process": "child", **self.other["gflops"]})
        names = {"matmul": "tf.matmul", "inception_v3": f"InceptionV3 step, {self.inception_size} px",
                 "inception_v3_paper": f"InceptionV3 step, {PAPER_INCEPTION_SIZE} px", "small_cnn": "small CNN step"}
        return pd.DataFrame(rows).rename(columns=names).style.format(precision=1).hide(axis="index")

    def profile_table(self) -> Styler:
        return pd.DataFrame(self.profile_rows).style.format(precision=1, na_rep="—").hide(axis="index")

    def glued(self) -> dict[str, Any]:
        gflops, nan = self.kernel["gflops"], float("nan")
        conv, grad = self.inception_op("Conv2D"), self.inception_op("Conv2DBackpropInput")
        return {
            "inception_gflops": gflops["inception_v3"], "matmul_gflops": gflops["matmul"], "small_gflops": gflops["small_cnn"],
            "inception_share": median(self.share_rounds("inception_v3")) * 100,
            "inception_step_gflop": self.inception_step_flops / 1e9, "paper_share_sentence": self._paper_sentence(),
            "conv_share": conv["share of op time %"] if conv else nan,
            "conv_gflops": conv["GFLOP/s"] if conv and conv["GFLOP/s"] else nan,
            "grad_share": grad["share of op time %"] if grad else nan,
            "small_profile_sentence": self._small_profile_sentence(),
            "grad_gflops": grad["GFLOP/s"] if grad and grad["GFLOP/s"] else nan,
            "onednn_sentence": self._onednn_sentence(),
        }

    def _paper_sentence(self) -> str:
        if self.goal_workload != "inception_v3_paper":
            return "The step at the paper's image size was not measured in this profile"
        gflops = self.kernel["gflops"]["inception_v3_paper"]
        return (f"At the paper's {PAPER_INCEPTION_SIZE} px (batches of {self.paper_batch}), where every feature map is "
                f"{(PAPER_INCEPTION_SIZE / self.inception_size) ** 2:.0f} times larger, the same step ran at {gflops:.1f} "
                f"GFLOP/s: {self.share * 100:.0f} % of the rate of tf.matmul, the figure the goal below judges")

    def _small_profile_sentence(self) -> str:
        top = next((r for r in self.profile_rows if r["model"] == self.study_arch), None)
        if top is None:
            return "its profile is empty"
        memory = " (the gradient of max-pooling, which moves memory and does no arithmetic)" if top["op"].endswith("MaxPoolGrad") else ""
        return f"its largest share of op time, {top['share of op time %']:.0f} %, went to {top['op']}" + memory

    def _onednn_sentence(self) -> str:
        if self.other and "gflops" in self.other:
            other = self.other["gflops"]
            return (
                f"A child process with oneDNN {'on' if self.other['onednn'] else 'off'} ran the InceptionV3 step at "
                f"{other['inception_v3']:.1f} GFLOP/s, {other['inception_v3'] / self.kernel['gflops']['inception_v3']:.2f}× this "
                f"process's rate and {100 * other['inception_v3'] / other['matmul']:.0f} % of its own tf.matmul rate "
                f"({other['matmul']:.1f} GFLOP/s)")
        if self.other:
            return f"The child process with the other oneDNN setting failed: {self.other['error']}"
        return "The other oneDNN setting was not measured in this profile"


def op_profile_rows(models: Sequence[tuple[str, keras.Model, int]], *, seed: int = 0, top: int = 6) -> list[dict[str, Any]]:
    """For each (name, model, batch), the ``top`` op types of its compiled attack step by time: share of op time,
    ms per step, and for convolutions (forward and input-gradient, each doing the conv layers' arithmetic
    once; the input gradient of a first convolution that :mod:`helpers.core.first_conv` computes as a matrix
    product is not a convolution op, so its arithmetic is left out of that op's rate) the GFLOP/s they reached."""
    top = check_int("top", top, minimum=1)
    rows = []
    for arch, net, batch in models:
        conv_flops = forward_flops(net, dense=False) * batch
        first = replaced_convolution(net)
        gradient_flops = conv_flops - (layer_flops(first) * batch if first is not None else 0)
        f, (x, t) = gradient_step(net), random_batch(net, batch, seed=seed)
        op_seconds = op_time_profile(lambda f=f, x=x, t=t: f(x, t))
        total = sum(op_seconds.values()) or float("nan")
        for op, seconds in sorted(op_seconds.items(), key=lambda kv: -kv[1])[:top]:
            base = op.removeprefix("_MklNative").removeprefix("_Mkl").removeprefix("_").removeprefix("Fused")  # fused: + bias, ReLU
            conv = base in ("Conv2D", "Conv2DBackpropInput")
            flops = gradient_flops if base == "Conv2DBackpropInput" else conv_flops
            rate = flops / seconds / 1e9 if conv and seconds > 0 else None
            rows.append({"model": arch, "op": op, "share of op time %": 100 * seconds / total,
                         "ms per step": 1e3 * seconds, "GFLOP/s": rate})
    return rows


def kernel_measurements(
    model: keras.Model, inception: keras.Model, *, study_arch: str, inception_size: int, inception_batch: int,
    paper_batch: int, repeats: int, compare_backends: bool, onednn: bool | None, seed: int = 0,
) -> KernelRates:
    """:func:`helpers.bench.flops.kernel_rates` on the study model, ``inception`` and (unless ``paper_batch`` is 0)
    an untrained InceptionV3 at the paper's :data:`PAPER_INCEPTION_SIZE` px, their op profiles, and (if
    ``compare_backends``) the rates with the other oneDNN setting in a child process (its failure is reported)."""
    if not isinstance(compare_backends, bool):
        raise TypeError(f"compare_backends: expected True or False, got {compare_backends!r}")
    paper_batch = check_int("paper_batch", paper_batch, minimum=0)
    paper = None
    if paper_batch:
        from helpers.training.models import build_model

        paper = build_model("inception_v3", input_shape=(PAPER_INCEPTION_SIZE, PAPER_INCEPTION_SIZE, 3), num_classes=3)
    kernel = kernel_rates(batch=inception_batch, small_batch=ATTACK_BATCH, repeats=repeats, inception=inception, small=model,
                          paper_inception=paper, paper_batch=paper_batch or 1)
    rows = op_profile_rows([("inception_v3", inception, inception_batch), (study_arch, model, ATTACK_BATCH)], seed=seed)
    other = None
    if compare_backends:
        try:
            other = kernel_rates_in_child(
                onednn=not onednn, image_size=inception_size, batch=inception_batch,
                small_shape=list(model.input_shape[1:]), repeats=repeats,
            )
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            other = {"error": str(error)[:200]}
    return KernelRates(study_arch, inception_size, inception_batch, paper_batch, kernel, rows, other,
                       attack_step_flops(inception), attack_step_flops(model))


# --- The defence's cost in training ------------------------------------------------------------------------


@dataclass
class FilterCosts:
    """Seconds per training step of each variant (:func:`helpers.bench.filter_costs.training_step_times`) and of the
    two ways to write the Gaussian blur."""

    batch_size: int
    seconds: dict[str, list[float]]
    blur_seconds: dict[str, list[float]]

    @property
    def base(self) -> float:
        """Median seconds of a training step without a filter."""
        return median(self.seconds["none"])

    def extra(self) -> dict[str, float]:
        """Each variant's extra time per step: the median over the rounds of its step over the unfiltered step of
        the same round, minus 1 (what the chapter's goals judge)."""
        return {k: median(paired_ratios(v, self.seconds["none"])) - 1 for k, v in self.seconds.items()}

    def record(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "seconds_per_step": self.seconds, "extra": self.extra(),
                "gaussian_depthwise_over_matrix": median(self.blur_seconds["depthwise"]) / median(self.blur_seconds["matrix"])}

    def glued(self) -> dict[str, float]:
        extra = self.extra()
        values = {}
        for spec, name in TRAINING_GLUE.items():
            values[f"{name}_layer_extra"] = 100 * extra[f"layer {spec}"]
            values[f"{name}_scipy_extra"] = 100 * extra[f"scipy {spec}"]
        return values | {"train_step_ms": 1e3 * self.base, "depthwise_factor": self.record()["gaussian_depthwise_over_matrix"]}

    def table(self) -> Styler:
        extra = self.extra()
        rows = [{"training step": "no filter", "ms": 1e3 * self.base, "extra %": 0.0}]
        for spec in TRAINING_DEFENCES:
            for where in ("layer", "scipy"):
                name = f"{where} {spec}"
                how = "layer in the model" if where == "layer" else "scipy.ndimage in the input pipeline"
                rows.append({"training step": f"{Defence.parse(spec).label}, {how}", "ms": 1e3 * median(self.seconds[name]),
                             "extra %": 100 * extra[name]})
        return pd.DataFrame(rows).style.format({"ms": "{:.1f}", "extra %": "{:+.1f}"}).hide(axis="index")


def filter_training_costs(
    arch: str, images: np.ndarray, labels: np.ndarray, *, num_classes: int, batch_size: int, n_batches: int,
    repeats: int, seed: int = 0,
) -> FilterCosts:
    """Training steps of ``arch`` with each of :data:`TRAINING_DEFENCES` as a layer and in the input pipeline, and
    the Gaussian layer's blur against a depthwise convolution on one batch, ``repeats`` rounds each. A training
    set smaller than ``batch_size`` (a small image folder) is timed in batches of all its images."""
    batch_size = min(check_int("batch_size", batch_size, minimum=1), len(images))
    seconds = training_step_times(
        arch, images, labels, defences=list(TRAINING_DEFENCES), num_classes=num_classes,
        batch_size=batch_size, n_batches=n_batches, repeats=repeats, seed=seed,
    )
    blur = gaussian_blur_times(images[:batch_size], sigma=BLUR_SIGMA, repeats=repeats)
    return FilterCosts(batch_size, seconds, blur)


# --- The live slider's assets ------------------------------------------------------------------------------

# The chapters with a live slider (their executed notebooks, under the repository root) and the weights files they
# write (helpers.core.paths.live_slider_dir()).
SLIDER_PAGES = {"Gaussian": "book/executed/02_gaussian.ipynb", "median": "book/executed/03_median.ipynb"}
SLIDER_LIMIT_MB = 2.0  # what the slider may add to a page before it is ready


@dataclass
class SliderAssets:
    """What the live slider adds to each page (:func:`helpers.book.browser_slider.page_assets`) and how long a
    standalone copy of it takes to be ready in Chromium (:func:`helpers.book.browser_slider.first_render_seconds`)."""

    pages: dict[str, PageAssets]
    renders: dict[str, FirstRender]

    def first_load_mb(self) -> dict[str, float]:
        return {label: assets.first_load_bytes / 1e6 for label, assets in self.pages.items()}

    def record(self) -> dict[str, Any]:
        return {"limit_mb": SLIDER_LIMIT_MB} | {label: asdict(assets) | {
            "first_load_bytes": assets.first_load_bytes, "every_model_bytes": assets.every_model_bytes,
            "first_render_seconds": list(self.renders[label].runs), "first_render_median": self.renders[label].seconds,
            "first_render_note": self.renders[label].reason} for label, assets in self.pages.items()}

    def glued(self) -> dict[str, Any]:
        render = self._render_sentence()
        return {"slider_sizes_sentence": self._sizes_sentence(), "slider_render_sentence": render[:1].upper() + render[1:]}

    def _sizes_sentence(self) -> str:
        parts = []
        for label, assets in self.pages.items():
            mb = assets.first_load_bytes / 1e6
            verdict = "under" if mb <= SLIDER_LIMIT_MB else "over"
            share = 100 * assets.first_model_bytes / assets.first_load_bytes
            parts.append(f"the {label} page loads {mb:.2f} MB before its slider is ready ({share:.0f} % of it the first "
                         f"model's weights), {verdict} the {SLIDER_LIMIT_MB:g} MB limit, and "
                         f"{assets.every_model_bytes / 1e6:.1f} MB once a reader has visited "
                         f"{'both' if assets.n_models == 2 else f'all {assets.n_models}'} of its models")
        return "; ".join(parts)

    def _render_sentence(self) -> str:
        parts = []
        for label, render in self.renders.items():
            if render.seconds is None:
                parts.append(f"the {label} page's first render was not measured ({render.reason})")
            else:
                runs = len(render.runs)
                parts.append(f"the {label} page's slider was ready {render.seconds:.2f} s after navigation started "
                             f"({'one load' if runs == 1 else f'median of {runs} loads'})")
        return "; ".join(parts)

    def table(self) -> Styler:
        rows = [{"page": label, "models": assets.n_models,
                 "bundle + state (kB)": (assets.script_bytes + assets.state_bytes) / 1e3,
                 "first model (MB)": assets.first_model_bytes / 1e6, "first load (MB)": assets.first_load_bytes / 1e6,
                 "every model visited (MB)": assets.every_model_bytes / 1e6,
                 "first render (s)": self.renders[label].seconds} for label, assets in self.pages.items()]
        return pd.DataFrame(rows).style.format({"bundle + state (kB)": "{:.0f}", "first model (MB)": "{:.2f}",
                                                "first load (MB)": "{:.2f}", "every model visited (MB)": "{:.1f}",
                                                "first render (s)": "{:.2f}"}, na_rep="not measured").hide(axis="index")


def slider_assets(
    *, pages: Mapping[str, str | os.PathLike[str]] = SLIDER_PAGES, models_dir: str | os.PathLike[str] | None = None,
    repeats: int, measure_render: bool = True,
) -> SliderAssets:
    """Each page's slider assets, from its executed notebook (relative paths are under the repository root) and the
    weights files in ``models_dir`` (default ``data/live-slider/``), and (if ``measure_render``) the median of
    ``repeats`` first renders of its slider in Chromium."""
    if not isinstance(pages, Mapping) or not pages:
        raise TypeError(f"pages: expected a mapping of page labels to executed notebooks, got {pages!r}")
    repeats = check_int("repeats", repeats, minimum=1)
    if not isinstance(measure_render, bool):
        raise TypeError(f"measure_render: expected True or False, got {measure_render!r}")
    models_dir = paths.live_slider_dir() if models_dir is None else models_dir
    assets, renders = {}, {}
    for label, notebook in pages.items():
        cell = slider_cell_html(paths.root() / notebook)
        assets[label] = page_assets(cell, models_dir=models_dir)
        renders[label] = (first_render_seconds(cell, models_dir=models_dir, repeats=repeats) if measure_render
                          else FirstRender((), "not asked for"))
    return SliderAssets(assets, renders)
