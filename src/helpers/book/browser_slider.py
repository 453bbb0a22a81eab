"""A σ (or median-window) slider that recomputes in the reader's browser, on a static page with no kernel.

The filter, the defended CNN's forward and backward pass and the paper's attack run in plain JavaScript
(``src/js/live_slider.js``, an anywidget-shaped ES module). This module gives it what it needs:

* :func:`export_network` — the layer list and weights of a trained ``small_cnn``-like model (conv2d "same",
  max-pooling, flatten, dense; the filter layer is left out: the browser applies the slider's filter itself).
  Weights stay exact float32, stored as byte planes and zlib-compressed: 1.43 MB per small CNN (1.91 MB as
  base64) instead of 1.69 MB (2.25 MB). ``bits=28`` would round them (relative error ≤ 2**-20, 1.67 MB as base64),
  but then max-pooling breaks some near-ties differently from Keras and an attack drifts from Python's by ~1e-3
  in ‖δ‖₂ after 8 steps (measured), against ~1e-8 with the exact weights.
* :func:`write_weights_script` — one ``<key>.js`` file per model that assigns the weights to a global, so the
  page loads it with ``<script src>`` (works from ``file://``); the page loads a model only when the slider
  first needs it.
* :func:`bundle_script` — ``live-slider.js``: the module's text and the loader, written by the book build.
* :func:`browser_slider` — trains or loads (cached, :func:`helpers.training.train.fit_cached`) the defended model of
  every grid value, writes their weights files, and returns the HTML for a notebook cell.
* :func:`page_assets`, :func:`first_render_seconds` — what the slider adds to a page (bytes of the bundle, the
  embedded state, the first model and all models) and how long it takes to be ready in Chromium, for the
  performance chapter.
* :func:`reference_filter`, :func:`model_at` — the Python side the browser test compares with.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import numpy as np

from helpers.book.slider_bundle import ESM_FILE, JS_DIR, LOADER_FILE, bundle_script  # noqa: F401 (part of this module's API)
from helpers.book.slider_weights import (  # noqa: F401  (the weights' export, also read from here)
    ENCODING,
    WEIGHTS_GLOBAL,
    decode_network,
    decode_parameters,
    encode_parameters,
    export_network,
    network_layers,
    weights_script,
    write_weights_script,
)
from helpers.core import paths
from helpers.core.validate import check_choice, check_float, check_images, check_int
from helpers.defences.filters import Defence, filter_kind
from helpers.training.data import Dataset

# The filter kinds src/js/live_slider.js implements (a new kind in helpers.defences.filters needs its JavaScript too),
# with each slider's (min, max, step) and starting value.
KINDS = ("gaussian", "median")
RANGES = {"gaussian": (0.0, 4.0, 0.01), "median": (1.0, 9.0, 2)}
START = {"gaussian": 1.5, "median": 3}
CSS_CLASS = "live-slider-browser"


# ---------------------------------------------------------------------------------------------- the page


def filter_spec(kind: str, value: float) -> str:
    """The defence spec of the slider at ``value``: ``filter_spec("gaussian", 0.7)`` → 'gaussian:0.7'."""
    return str(slider_defence(kind, value))


def slider_defence(kind: str, value: float) -> Defence:
    """The :class:`~helpers.defences.filters.Defence` of the slider at ``value`` (its identity value is no filter)."""
    kind = check_choice("kind", kind, KINDS)
    value = check_float("value", value, minimum=0.0, maximum=64.0)
    try:
        return Defence.of(kind, value)
    except ValueError as error:
        raise ValueError(f"value: {str(error).removeprefix('defence: ')}") from None


def grid_values(kind: str, grid: Sequence[float]) -> list[float]:
    """The slider values of the trained models: the grid plus the unfiltered model (σ = 0 or window 1)."""
    kind = check_choice("kind", kind, KINDS)
    if not isinstance(grid, (list, tuple)) or not grid:
        raise TypeError(f"grid: expected a non-empty list of {filter_kind(kind).symbol} values, got {grid!r}")
    values = {filter_kind(kind).identity}
    for value in grid:
        filter_spec(kind, value)
        values.add(float(value))
    return sorted(values)


def slider_state(
    *, kind: str, models: Sequence[dict[str, Any]], digits: np.ndarray, labels: Sequence[int],
    class_names: Sequence[str], step: float, max_steps: int, value: float | None = None,
) -> dict[str, Any]:
    """The traits the ES module reads (see the head of ``src/js/live_slider.js``)."""
    kind = check_choice("kind", kind, KINDS)
    digits = check_images("digits", digits)
    if len(labels) != len(digits):
        raise ValueError(f"labels: expected {len(digits)} labels, got {len(labels)}")
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    if not models:
        raise ValueError("models: expected at least one model description")
    low, high, slider_step = RANGES[kind]
    if value is None:
        value = START[kind]
    value = check_float("value", value, minimum=low, maximum=high)
    return {
        "kind": kind, "symbol": filter_kind(kind).symbol, "value": value, "min": low, "max": high, "slider_step": slider_step,
        "truncate": 4.0, "models": list(models), "class_names": list(class_names), "step": step, "max_steps": max_steps,
        "digits": {"shape": list(digits.shape), "labels": [int(v) for v in labels],
                   "data": base64.b64encode(np.ascontiguousarray(digits, dtype="<f4").tobytes()).decode("ascii")},
    }


def slider_html(state: dict[str, Any], *, script_url: str = "../../_static/live-slider/live-slider.js") -> str:
    """The HTML of one slider: its container, its state as JSON, and ``<script src=script_url>`` (the bundle)."""
    if not isinstance(state, dict) or "kind" not in state:
        raise ValueError("state: expected the dict returned by slider_state")
    if not isinstance(script_url, str) or not script_url.endswith(".js"):
        raise ValueError(f"script_url: expected the URL of live-slider.js relative to the page, got {script_url!r}")
    # "<" escaped as \u003c keeps "</script>" (and "<!--") out of the JSON block; JSON.parse restores it.
    data = json.dumps(state, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    noscript = "The live slider needs JavaScript; the precomputed slider above works without it."
    return (f'<div class="{CSS_CLASS}" data-status="starting"><noscript>{html.escape(noscript)}</noscript></div>'
            f'<script type="application/json" class="live-slider-state">{data}</script>'
            f'<script src="{html.escape(script_url)}"></script>')


def browser_slider(
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
    n_digits: int = 6,
    value: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    script_url: str = "../../_static/live-slider/live-slider.js",
):
    """The browser slider for a notebook cell (an ``IPython.display.HTML``).

    For every value of ``grid`` (plus the unfiltered model) it takes the defended model that the training chapter
    trains — ``fit_cached(arch, data, defence=spec, epochs=epochs, batch_size=batch_size, seed=train_seed)``,
    from the cache when it exists — writes its weights to ``weights_dir/<model file stem>.js`` (default ``data/live-slider/``; the book build copies
    them to ``models/`` beside ``script_url``), and embeds the first ``n_digits`` test digits. In the page, the slider filters those digits with any value, classifies them
    with the model of the nearest grid value, and attacks them.
    """
    from IPython.display import HTML

    from helpers.studies.evaluate import clean_accuracy
    from helpers.training.train import fit_cached

    if not isinstance(data, Dataset):
        raise TypeError(f"data: expected a helpers.training.data.Dataset, got {type(data).__name__}")
    kind = check_choice("kind", kind, KINDS)
    values = grid_values(kind, grid)
    n_digits = min(check_int("n_digits", n_digits, minimum=1, maximum=32), len(data.x_test))  # a tiny test set shows all it has
    models = []
    for grid_value in values:
        spec = filter_spec(kind, grid_value)
        fit = fit_cached(arch, data, defence=spec, epochs=epochs, batch_size=batch_size, seed=train_seed,
                         cache_dir=cache_dir, verbose=0)
        key = fit.path.stem
        write_weights_script(fit.model, key=key, directory=paths.live_slider_dir() if weights_dir is None else weights_dir)
        models.append({"key": key, "spec": spec, "value": grid_value, "label": Defence.parse(spec).label,
                       "accuracy": clean_accuracy(fit.model, data.x_test, data.y_test)})
    state = slider_state(kind=kind, models=models, digits=data.x_test[:n_digits], labels=data.y_test[:n_digits],
                         class_names=data.class_names, step=step, max_steps=max_steps, value=value)
    return HTML(slider_html(state, script_url=script_url))


# ---------------------------------------------------------------------------------------------- what a page loads

STATE_PATTERN = re.compile(r'<script type="application/json" class="live-slider-state">(.*?)</script>', re.S)
SCRIPT_PATTERN = re.compile(r'<script src="([^"]+\.js)"></script>')
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
)


@dataclass(frozen=True)
class PageAssets:
    """What the live slider adds to one page, in bytes: the bundle ``live-slider.js``, the slider cell's HTML (its
    container, embedded state and script tag), the weights of the model it starts on (``first_key``) and of all
    its models."""

    script_bytes: int
    state_bytes: int
    first_key: str
    first_model_bytes: int
    all_models_bytes: int
    n_models: int

    @property
    def first_load_bytes(self) -> int:
        """What a reader's browser loads before the slider is ready: script + state + the first model."""
        return self.script_bytes + self.state_bytes + self.first_model_bytes

    @property
    def every_model_bytes(self) -> int:
        """What it has loaded once the reader has visited every model: script + state + all models."""
        return self.script_bytes + self.state_bytes + self.all_models_bytes


def slider_cell_html(source: str | os.PathLike[str]) -> str:
    """The slider cell's HTML: ``source`` itself when it is HTML text (a ``str``), else the ``text/html`` output
    holding ``live-slider-state`` in the executed notebook at the path ``source``."""
    if isinstance(source, str):
        if not STATE_PATTERN.search(source):
            raise ValueError("source: the HTML holds no live-slider-state (pass a notebook as a Path)")
        return source
    if not isinstance(source, os.PathLike):
        raise TypeError(f"source: expected HTML text or the path of an executed notebook, got {type(source).__name__}")
    path = Path(source)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"source: cannot read the notebook {path}: {error}") from None
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            if STATE_PATTERN.search(text):
                return text
    raise ValueError(f"source: {path} has no output holding a live-slider-state")


def embedded_state(html_text: str) -> dict[str, Any]:
    """The state a slider's HTML embeds (what :func:`slider_state` returned)."""
    match = STATE_PATTERN.search(slider_cell_html(html_text))
    return json.loads(match.group(1))


def first_model_key(state: dict[str, Any]) -> str:
    """The key of the model the slider starts on: the nearest to its value, the lower on a tie (as the page)."""
    if not isinstance(state, dict) or not state.get("models") or "value" not in state:
        raise ValueError("state: expected the dict returned by slider_state")
    return min(state["models"], key=lambda m: (abs(m["value"] - state["value"]), m["value"]))["key"]


def page_assets(source: str | os.PathLike[str], *, models_dir: str | os.PathLike[str]) -> PageAssets:
    """The sizes of :class:`PageAssets` for the slider of ``source`` (an executed notebook's path, or the cell's
    HTML text), its weights read from ``models_dir/<key>.js``; the bundle is :func:`bundle_script`, as built."""
    cell = slider_cell_html(source)
    state = embedded_state(cell)
    folder = Path(models_dir)
    sizes = {}
    for model in state["models"]:
        path = folder / f"{model['key']}.js"
        if not path.is_file():
            raise ValueError(f"models_dir: no weights file {path.name} in {folder}")
        sizes[model["key"]] = path.stat().st_size
    first = first_model_key(state)
    return PageAssets(script_bytes=len(bundle_script().encode("utf-8")), state_bytes=len(cell.encode("utf-8")),
                      first_key=first, first_model_bytes=sizes[first], all_models_bytes=sum(sizes.values()),
                      n_models=len(sizes))


@dataclass(frozen=True)
class FirstRender:
    """Seconds from navigation start until the slider is ready (its container's ``data-status="ready"``), per
    run, and their median; ``None`` and the reason when it was not measured."""

    runs: tuple[float, ...]
    reason: str = ""

    @property
    def seconds(self) -> float | None:
        return float(np.median(self.runs)) if self.runs else None


def standalone_page(html_text: str, *, models_dir: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Write a page holding only the slider of ``html_text`` into ``directory``, with the bundle and the weights
    files of its models at the relative paths its ``<script src>`` names (as in the book); returns the page."""
    cell = slider_cell_html(html_text)
    scripts = SCRIPT_PATTERN.findall(cell)
    if len(scripts) != 1:
        raise ValueError("html_text: expected one <script src=...live-slider.js> in the slider's HTML")
    parts = PurePosixPath(html.unescape(scripts[0])).parts
    ups = len(parts) - len(list(itertools.dropwhile(lambda p: p == "..", parts)))
    rest = parts[ups:]
    if not rest or any(p in ("..", "/") or ":" in p for p in rest):
        raise ValueError(f"html_text: the bundle's URL {scripts[0]!r} must be a relative path")
    root = Path(directory)
    page = root.joinpath(*["page"] * ups, "index.html")
    bundle = root.joinpath(*rest)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text(bundle_script(), encoding="utf-8")
    models = bundle.parent / "models"
    models.mkdir(exist_ok=True)
    for model in embedded_state(cell)["models"]:
        source = Path(models_dir) / f"{model['key']}.js"
        if not source.is_file():
            raise ValueError(f"models_dir: no weights file {source.name} in {Path(models_dir)}")
        shutil.copyfile(source, models / source.name)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>live slider</title></head>'
                    f"<body>{cell}</body></html>\n", encoding="utf-8")
    return page


# Runs before the page's own scripts: records performance.now() (ms since navigation start) when the slider's
# container first gets data-status "ready" or "error".
_READY_OBSERVER = """(() => {
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const status = m.target.dataset && m.target.dataset.status;
      if (m.target.classList.contains("live-slider-browser") && (status === "ready" || status === "error")
          && window.__liveSliderDone === undefined) {
        window.__liveSliderDone = { status, ms: performance.now(), text: m.target.textContent.slice(-300) };
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-status"] });
})();"""


def first_render_seconds(
    html_text: str, *, models_dir: str | os.PathLike[str], repeats: int = 3, timeout_s: float = 60.0,
    chromium: str | os.PathLike[str] = CHROMIUM,
) -> FirstRender:
    """Open a :func:`standalone_page` of the slider from file:// in headless Chromium ``repeats`` times (a new tab
    each time) and time navigation start → the slider ready. Without Chromium or Playwright: no runs, and why."""
    repeats = check_int("repeats", repeats, minimum=1)
    timeout_s = check_float("timeout_s", timeout_s, minimum=0.0, strict_minimum=True)
    if not Path(chromium).exists():
        return FirstRender((), f"Chromium is not installed at {chromium}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return FirstRender((), "Playwright is not installed")
    with tempfile.TemporaryDirectory(prefix="live-slider-") as folder:
        page = standalone_page(html_text, models_dir=models_dir, directory=Path(folder) / "site")
        # Playwright's sync API refuses to run in a thread with an asyncio loop (a Jupyter kernel): use a thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(_time_page, page.as_uri(), profile=Path(folder) / "profile", repeats=repeats,
                               timeout_s=timeout_s, chromium=Path(chromium)).result()


def _time_page(url: str, *, profile: Path, repeats: int, timeout_s: float, chromium: Path) -> FirstRender:
    from playwright.sync_api import Error, TimeoutError, sync_playwright

    runs = []
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=str(chromium), headless=True, args=list(CHROMIUM_FLAGS))
            try:
                context.add_init_script(_READY_OBSERVER)
                for _ in range(repeats):
                    tab = context.new_page()
                    tab.goto(url, wait_until="commit")
                    tab.wait_for_function("window.__liveSliderDone !== undefined", timeout=1e3 * timeout_s)
                    done = tab.evaluate("window.__liveSliderDone")
                    tab.close()
                    if done["status"] != "ready":
                        return FirstRender((), f"the slider failed to start: {done['text'].strip()}")
                    runs.append(done["ms"] / 1e3)
            finally:
                context.close()
    except TimeoutError:
        return FirstRender((), f"the slider was not ready within {timeout_s:g} s")
    except Error as error:
        return FirstRender((), f"Chromium failed: {str(error).splitlines()[0][:200]}")
    return FirstRender(tuple(runs))


# ---------------------------------------------------------------------------------------------- references


def reference_filter(kind: str, value: float, images: np.ndarray) -> np.ndarray:
    """``scipy.ndimage`` at the slider's value (mode "reflect", truncate 4.0), per image and channel."""
    images = check_images("images", images, value_range=None)
    return slider_defence(kind, value).reference(images).copy()


def model_at(model: keras.Model, *, kind: str, value: float) -> keras.Model:
    """``model``'s layers (shared weights) behind the filter of the slider's value instead of its own filter."""
    layer = slider_defence(kind, value).layer()
    layers = network_layers(model)
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    x = layer(inputs) if layer is not None else inputs
    for part in layers:
        x = part(x)
    return keras.Model(inputs, x, name=f"{model.name}_at_{kind}_{value:g}".replace(".", "p"))
