"""Fast tests of the browser slider's Python side (weights export, page HTML) and of its JavaScript under node.

The JavaScript check runs ``src/js/live_slider.js`` in node on an untrained small CNN: filter, logits and a few
attack steps against scipy and Keras (skipped when node is missing). The built pages are tested in Chromium by
``test_browser_live.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from test_browser import chromium  # noqa: F401  (Debian's chromium, or a skip; a failure under CI)

from helpers.book import browser_slider as bs
from helpers.training.models import build_model


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(3)
    return build_model("small_cnn", input_shape=(28, 28, 1), num_classes=10, defence="gaussian:1.5")


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:3]


def test_parameters_round_trip_exactly_with_32_bits_and_within_2e20_with_28():
    values = np.random.default_rng(0).normal(scale=0.1, size=1000).astype(np.float32)
    values[:3] = [0.0, -0.0, 1e-30]
    assert np.array_equal(bs.decode_parameters(bs.encode_parameters(values, bits=32)), values)
    rounded = bs.decode_parameters(bs.encode_parameters(values, bits=28))
    relative = np.abs(rounded - values) / np.maximum(np.abs(values), 1e-30)
    assert relative.max() <= 2.0**-20
    assert bs.decode_parameters(bs.encode_parameters(np.zeros(0, np.float32))).size == 0
    assert np.array_equal(bs.decode_parameters(bs.encode_parameters(values)), values)  # exact by default


@pytest.mark.parametrize(("call", "message"), [
    (lambda: bs.encode_parameters(np.ones(3), bits=12), r"^bits: "),
    (lambda: bs.encode_parameters(np.array([1.0, np.nan])), r"^values: "),
    (lambda: bs.filter_spec("median", 4), r"^value: .*odd"),
    (lambda: bs.filter_spec("box", 3), r"^kind: "),
    (lambda: bs.filter_spec("gaussian", -1), r"^value: "),
    (lambda: bs.weights_script({}, key="../x"), r"^key: "),
    (lambda: bs.grid_values("gaussian", []), r"^grid: "),
    (lambda: bs.slider_html({}), r"^state: "),
    (lambda: bs.decode_network({"layers": []}), r"^payload: "),
])
def test_bad_parameters_fail_with_one_line_naming_them(call, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_export_keeps_the_layers_after_the_filter_and_their_weights(cnn):
    payload = bs.export_network(cnn, bits=32)
    layers = bs.decode_network(payload)
    assert [layer["type"] for layer in layers] == ["conv2d", "max_pool", "conv2d", "max_pool", "flatten", "dense", "dense"]
    assert [layer.get("activation") for layer in layers if "kernel" in layer] == ["relu", "relu", "relu", "linear"]
    exported = [layer[name] for layer in layers for name in ("kernel", "bias") if name in layer]
    weights = cnn.get_weights()
    assert len(exported) == len(weights)
    for got, want in zip(exported, weights, strict=True):
        assert np.array_equal(got, want)
    assert json.loads(bs.weights_script(payload, key="m-1").split("] = ", 1)[1].rstrip(";\n")) == payload


def test_export_refuses_layers_the_browser_cannot_run():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ValueError, match=r"^model: layer .*GlobalAveragePooling2D.* not supported"):
        bs.export_network(model)


def test_reference_filter_and_model_at_match_the_keras_filter_layers(cnn, digits):
    from helpers.defences.filters import Defence

    assert np.abs(bs.reference_filter("gaussian", 0.7, digits) - Defence.parse("gaussian:0.7").apply(digits)).max() < 1e-5
    assert np.array_equal(bs.reference_filter("median", 5, digits), Defence.parse("median:5").apply(digits))
    same = bs.model_at(cnn, kind="gaussian", value=1.5)
    assert np.abs(same.predict(digits, verbose=0) - cnn.predict(digits, verbose=0)).max() < 1e-5
    assert bs.grid_values("median", [3, 5]) == [1.0, 3.0, 5.0]


def test_page_html_carries_the_state_and_loads_the_bundle(digits):
    models = [{"key": "small_cnn-abc", "spec": "none", "value": 0.0, "label": "none", "accuracy": 0.9}]
    state = bs.slider_state(kind="gaussian", models=models, digits=digits, labels=[1, 2, 3],
                            class_names=[str(i) for i in range(10)], step=0.1, max_steps=10, value=0.7)
    state["class_names"][0] = "</script><!--"  # must not end the JSON block
    page = bs.slider_html(state)
    block = re.search(r'<script type="application/json" class="live-slider-state">(.*?)</script>', page, re.S).group(1)
    assert json.loads(block) == state
    assert page.endswith('<script src="../../_static/live-slider/live-slider.js"></script>')
    bundle = bs.bundle_script()
    assert bs.ESM_FILE.read_text() in json.loads(bundle.split(" || ", 1)[1].split(";\n", 1)[0])
    assert bs.LOADER_FILE.read_text() in bundle


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_matches_scipy_and_keras(cnn, digits, tmp_path):
    """Filter within 1e-5 of scipy, logits within 1e-3 of Keras, and ‖δ‖₂ after 4 attack steps within 1e-3 of
    helpers.attacks.attack (exact gradient for the Gaussian; BPDA on both sides for the median)."""
    from helpers.attacks.adaptive import bpda_model
    from helpers.attacks.attack import targeted_attack

    cases, targets = [("gaussian", 0.7), ("gaussian", 2.3), ("median", 5)], [7, 7, 7]
    expected = {}
    for (kind, value), target in zip(cases, targets, strict=True):
        model = bs.model_at(cnn, kind=kind, value=value)
        attacker = model if kind == "gaussian" else bpda_model(model)
        result = targeted_attack(attacker, digits[:1], np.array([target]), max_steps=4, progress=False)
        expected[f"{kind}:{value}"] = {"filtered": bs.reference_filter(kind, value, digits).ravel().tolist(),
                                       "logits": model.predict(digits, verbose=0).tolist(), "l2": float(result.l2[0]),
                                       "steps": int(result.steps[0])}
    data = {"payload": bs.export_network(cnn), "digits": digits.ravel().tolist(), "shape": list(digits.shape),
            "cases": cases, "targets": targets}
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "run.mjs").write_text(f"""
import fs from "node:fs";
import * as ls from {json.dumps(bs.ESM_FILE.as_uri())};
const data = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / "data.json"))}));
const layers = await ls.decodeNetwork(data.payload);
const [n, h, w, c] = data.shape, size = h * w * c, shape = [h, w, c], out = {{}};
data.cases.forEach(([kind, value], k) => {{
  const filter = ls.makeFilter(kind, value, shape);
  const images = [...Array(n).keys()].map((i) => Float64Array.from(data.digits.slice(i * size, (i + 1) * size)));
  const filtered = images.map((img) => filter.forward(img));
  const state = {{ x: Float64Array.from(images[0]), steps: 0, status: 0 }};
  while (state.status === 0) ls.attackIteration(state, {{ layers, filter, shape, target: data.targets[k], step: 0.1, maxSteps: 4 }});
  out[`${{kind}}:${{value}}`] = {{ filtered: filtered.flatMap((f) => Array.from(f)),
    logits: filtered.map((f) => Array.from(ls.forward(layers, f, shape).logits)),
    l2: ls.l2Distance(state.x, images[0]), steps: state.steps }};
}});
console.log(JSON.stringify(out));
""")
    run = subprocess.run(["node", str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for key, want in expected.items():
        assert np.abs(np.array(got[key]["filtered"]) - want["filtered"]).max() < 1e-5, key
        assert np.abs(np.array(got[key]["logits"]) - want["logits"]).max() < 1e-3, key
        assert np.array_equal(np.argmax(got[key]["logits"], 1), np.argmax(want["logits"], 1)), key
        assert got[key]["steps"] == want["steps"] and abs(got[key]["l2"] - want["l2"]) < 1e-3, (key, got[key]["l2"], want["l2"])


# ------------------------------------------------------------------------------------------ what a page loads


def _state(digits, values, *, value=None):
    models = [{"key": f"m{i}", "spec": bs.filter_spec("gaussian", v), "value": v, "label": "x", "accuracy": 0.5}
              for i, v in enumerate(values)]
    return bs.slider_state(kind="gaussian", models=models, digits=digits, labels=[1, 2, 3],
                           class_names=[str(i) for i in range(10)], step=0.1, max_steps=10, value=value)


def _executed_notebook(path, cell_html):
    """An executed notebook as papermill writes it: the slider's HTML, split in lines, among other outputs."""
    lines = cell_html.splitlines(keepends=True) or [cell_html]
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Chapter"]},
        {"cell_type": "code", "metadata": {}, "source": [], "execution_count": 1, "outputs": [
            {"output_type": "stream", "name": "stdout", "text": ["training\n"]},
            {"output_type": "display_data", "metadata": {}, "data": {"text/html": ["<p>a static slider</p>"]}}]},
        {"cell_type": "code", "metadata": {}, "source": [], "execution_count": 2, "outputs": [
            {"output_type": "execute_result", "execution_count": 2, "metadata": {},
             "data": {"text/plain": ["<IPython.core.display.HTML object>"], "text/html": lines}}]},
    ]}
    path.write_text(json.dumps(notebook))
    return path


def test_page_assets_count_the_bundle_the_cell_and_the_weights_it_loads(digits, tmp_path):
    state = _state(digits, [0.0, 1.0, 2.0])  # starts at σ = 1.5: 1.0 and 2.0 tie, the lower wins (as in the page)
    cell = bs.slider_html(state)
    models = tmp_path / "models"
    models.mkdir()
    for i, size in enumerate([1000, 3000, 5000]):
        (models / f"m{i}.js").write_text("x" * size)
    (models / "unrelated.js").write_text("x" * 99)
    notebook = _executed_notebook(tmp_path / "02.ipynb", cell)
    assets = bs.page_assets(notebook, models_dir=models)
    assert assets == bs.page_assets(cell, models_dir=models)
    assert assets.first_key == "m1" and assets.n_models == 3
    assert assets.script_bytes == len(bs.bundle_script().encode())
    assert assets.state_bytes == len(cell.encode())
    assert (assets.first_model_bytes, assets.all_models_bytes) == (3000, 9000)
    assert assets.first_load_bytes == assets.script_bytes + assets.state_bytes + 3000
    assert assets.every_model_bytes == assets.script_bytes + assets.state_bytes + 9000
    assert bs.first_model_key(_state(digits, [0.0, 1.0, 2.0], value=1.9)) == "m2"
    assert bs.embedded_state(cell) == state


def test_page_assets_refuse_what_holds_no_slider_or_lacks_weights(digits, tmp_path):
    cell = bs.slider_html(_state(digits, [0.0, 1.5]))
    (tmp_path / "m0.js").write_text("x")
    with pytest.raises(ValueError, match=r"^models_dir: no weights file m1\.js"):
        bs.page_assets(cell, models_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^source: .* has no output holding a live-slider-state"):
        bs.page_assets(_executed_notebook(tmp_path / "x.ipynb", "<p>no slider</p>"), models_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^source: cannot read the notebook"):
        bs.page_assets(tmp_path / "missing.ipynb", models_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^source: the HTML holds no live-slider-state"):
        bs.page_assets("<p>no slider</p>", models_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^source: "):
        bs.page_assets(3, models_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^state: "):
        bs.first_model_key({"models": []})


def test_standalone_page_puts_the_bundle_and_weights_where_the_page_looks(digits, tmp_path):
    cell = bs.slider_html(_state(digits, [0.0, 1.5]))
    models = tmp_path / "models"
    models.mkdir()
    for key in ("m0", "m1"):
        (models / f"{key}.js").write_text(f"// {key}")
    page = bs.standalone_page(cell, models_dir=models, directory=tmp_path / "site")
    assert page == tmp_path / "site" / "page" / "page" / "index.html"
    assert cell in page.read_text()
    static = tmp_path / "site" / "_static" / "live-slider"
    assert (page.parent / "../../_static/live-slider/live-slider.js").resolve() == (static / "live-slider.js").resolve()
    assert (static / "live-slider.js").read_text() == bs.bundle_script()
    assert (static / "models" / "m1.js").read_text() == "// m1"
    flat = bs.standalone_page(bs.slider_html(_state(digits, [0.0, 1.5]), script_url="live-slider.js"),
                              models_dir=models, directory=tmp_path / "flat")
    assert flat.parent == tmp_path / "flat" and (flat.parent / "models" / "m0.js").exists()
    with pytest.raises(ValueError, match=r"^html_text: the bundle's URL .* must be a relative path"):
        bs.standalone_page(bs.slider_html(_state(digits, [0.0]), script_url="https://example.org/live-slider.js"),
                           models_dir=models, directory=tmp_path / "bad")


def test_first_render_is_not_measured_without_chromium(digits, tmp_path):
    render = bs.first_render_seconds(bs.slider_html(_state(digits, [0.0])), models_dir=tmp_path,
                                     chromium=tmp_path / "no-chromium")
    assert render.seconds is None and render.runs == () and "Chromium is not installed" in render.reason
    with pytest.raises(ValueError, match=r"^repeats: "):
        bs.first_render_seconds("<p></p>", models_dir=tmp_path, repeats=0)


@pytest.mark.browser
def test_first_render_times_a_tiny_page_until_the_slider_is_ready(chromium, cnn, digits, tmp_path):  # noqa: F811
    """An untrained small CNN's page, opened from file:// twice: two positive times, their median, no reason."""
    bs.write_weights_script(cnn, key="m0", directory=tmp_path / "models")
    cell = bs.slider_html(_state(digits, [1.5]))
    render = bs.first_render_seconds(cell, models_dir=tmp_path / "models", repeats=2, chromium=chromium)
    assert render.reason == "" and len(render.runs) == 2
    assert all(0 < t < float("inf") for t in render.runs)
    assert render.seconds == float(np.median(render.runs))
    late = bs.first_render_seconds(cell, models_dir=tmp_path / "models", repeats=1, timeout_s=1e-3, chromium=chromium)
    assert late.seconds is None and late.reason == "the slider was not ready within 0.001 s"
