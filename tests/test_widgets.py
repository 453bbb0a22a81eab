"""The slider helpers: static panels linked in the browser, and the live update function."""

import ipywidgets
import numpy as np
import pytest
from ipywidgets.widgets.widget_link import DirectionalLink, Link

from helpers.book import widgets
from helpers.studies.evaluate import attack_evaluation, filter_transfer, random_targets
from helpers.training.data import load_dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_mnist():
    return load_dataset("mnist", n_images=400, seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One model cache for this module: a model trained by one test is loaded by the next."""
    return tmp_path_factory.mktemp("widget-models")


def _panel(value: str) -> widgets.Panel:
    return widgets.Panel(value=value, html=widgets.caption(f"σ = {value}", value, ["line"]), png=PNG + value.encode())


def test_grid_values_labels_and_nearest():
    specs = widgets.grid_specs("gaussian", [1.5, 0.0, 3.0])
    assert specs == ["none", "gaussian:1.5", "gaussian:3"]
    assert [widgets.value_label(s, kind="gaussian") for s in specs] == ["0", "1.5", "3"]
    assert widgets.nearest_spec(1.2, specs, kind="gaussian") == "gaussian:1.5"
    assert widgets.nearest_spec(0.7, specs, kind="gaussian") == "none"
    assert widgets.nearest_spec(0.75, specs, kind="gaussian") == "none"  # a tie goes to the weaker filter
    windows = widgets.grid_specs("median", [5, 3])
    assert windows == ["none", "median:3", "median:5"]
    assert [widgets.value_label(s, kind="median") for s in windows] == ["1", "3", "5"]
    assert widgets.nearest_spec(7, windows, kind="median") == "median:5"


def test_bad_arguments_fail_fast():
    with pytest.raises(ValueError, match="kind"):
        widgets.grid_specs("box", [1.0])
    with pytest.raises(TypeError, match="values"):
        widgets.grid_specs("gaussian", [])
    with pytest.raises(ValueError, match="value"):
        widgets.nearest_spec(-1.0, ["none"], kind="gaussian")
    with pytest.raises(TypeError, match="panels"):
        widgets.static_slider([], description="σ")
    with pytest.raises(ValueError, match="distinct"):
        widgets.static_slider([_panel("1"), _panel("1")], description="σ")


def test_static_slider_links_the_stack_to_the_slider_in_the_browser():
    panels = [_panel(v) for v in ("0", "1.5", "3")]
    static = widgets.static_slider(panels, description="σ")
    assert isinstance(static.slider, ipywidgets.SelectionSlider)
    assert [label for label, _ in static.slider.options] == ["0", "1.5", "3"]
    assert isinstance(static.stack, ipywidgets.Stack) and len(static.stack.children) == 3
    # The link is a jslink (runs in the browser, no kernel): slider.index → stack.selected_index.
    assert isinstance(static.link, Link) and not isinstance(static.link, DirectionalLink)
    assert static.link.source == (static.slider, "index") and static.link.target == (static.stack, "selected_index")
    for page, panel in zip(static.stack.children, panels, strict=True):
        label, image = page.children
        assert f'data-value="{panel.value}"' in label.value and image.value == panel.png
    assert widgets.STATIC_CLASS in static.widget._dom_classes
    # The whole state serialises, as papermill stores it in the executed notebook.
    state = ipywidgets.Widget.get_manager_state()["state"]
    assert static.link.model_id in state and static.stack.model_id in state


def test_blur_panels_one_per_filter_with_the_blurred_images(small_mnist, cache):
    from helpers.training.train import train_model

    model = train_model("small_cnn", small_mnist, epochs=1, cache_dir=cache, verbose=0)
    images, labels = small_mnist.x_test[:3], small_mnist.y_test[:3]
    targets = random_targets(labels, num_classes=10, seed=0)
    adversarial = np.clip(images + 0.1 * np.random.default_rng(0).standard_normal(images.shape), 0, 1).astype(np.float32)
    specs = widgets.grid_specs("gaussian", [0.0, 1.5, 3.0])
    rows = filter_transfer(model, images, labels, adversarial, targets, specs)
    panels = widgets.blur_panels(model, rows[::-1], kind="gaussian", images=images, labels=labels, adversarial=adversarial,
                                 targets=targets, l2=np.ones(3), class_names=small_mnist.class_names, n_show=2)
    assert [p.value for p in panels] == ["0", "1.5", "3"]  # sorted by σ whatever the row order
    assert all(p.png.startswith(PNG) for p in panels)
    assert len({p.png for p in panels}) == 3  # every σ shows a different picture
    assert 'data-value="1.5"' in panels[1].html and "σ = 1.5" in panels[1].html
    assert f"{100 * rows[1]['clean_accuracy']:.1f} %" in panels[1].html


def test_live_update_blurs_predicts_and_attacks_with_the_nearest_defended_model(small_mnist, cache):
    live = widgets.live_slider(small_mnist, kind="gaussian", grid=[0.0, 1.5, 3.0], arch="small_cnn", epochs=1,
                               batch_size=64, train_seed=0, step=0.1, max_steps=300, n_show=2, cache_dir=cache)
    assert live.models == {}  # nothing is computed before the slider moves
    panel = live.update(1.2)
    assert panel["spec"] == "gaussian:1.5" and panel["model_value"] == 1.5
    assert set(live.models) == {"gaussian:1.5"}
    assert [layer.sigma for layer in live.models["gaussian:1.5"].layers if hasattr(layer, "sigma")] == [1.5]
    n_files = len(list(cache.glob("*.keras")))
    # The images are blurred with exactly the slider's σ, not the model's.
    from helpers.defences.filters import Defence

    np.testing.assert_allclose(panel["blurred"], Defence.parse("gaussian:1.2").apply(small_mnist.x_test[:2]), atol=1e-6)
    assert len(panel["predictions"]) == 2 and all(0.1 <= c <= 1 for c in panel["confidences"])
    assert 0.0 <= panel["accuracy"] <= 1.0
    reached = np.asarray(panel["success"])
    assert reached.any()
    assert (np.asarray(panel["adversarial_predictions"])[reached] == np.asarray(panel["targets"])[reached]).all()
    assert all(d > 0 for d, ok in zip(panel["l2"], reached, strict=True) if ok)
    assert panel["png"].startswith(PNG) and 'data-value="1.2"' in panel["html"]
    # The widget shows what update returned; moving the slider calls update.
    caption, image = live.widget.children[1:]
    assert image.value == panel["png"] and caption.value == panel["html"]
    live.slider.value = 1.4
    assert 'data-value="1.4"' in caption.value
    assert len(list(cache.glob("*.keras"))) == n_files  # same nearest model: reused, not retrained
    live.slider.value = 0.2
    assert set(live.models) == {"gaussian:1.5", "none"}


def test_live_median_slider_checks_the_window(small_mnist, tmp_path):
    live = widgets.live_slider(small_mnist, kind="median", grid=[3], arch="small_cnn", epochs=1, batch_size=64,
                               train_seed=0, max_steps=50, n_show=1, cache_dir=tmp_path)
    assert isinstance(live.slider, ipywidgets.IntSlider) and live.slider.step == 2
    with pytest.raises(ValueError, match="odd"):
        live.update(4)
    panel = live.update(5)
    assert panel["spec"] == "median:3" and 'data-value="5"' in panel["html"]


def test_defended_panels_show_the_same_images_for_every_model(small_mnist, cache):
    from helpers.training.train import train_model

    attacks = {}
    for spec in ("none", "gaussian:1.5"):
        model = train_model("small_cnn", small_mnist, defence=spec, epochs=1, cache_dir=cache, verbose=0)
        attacks[spec] = (model, attack_evaluation(model, small_mnist.x_test, small_mnist.y_test, n_images=6, max_steps=300,
                                                  progress=False))
    panels = widgets.defended_panels(attacks, small_mnist.x_test, accuracy={"none": 0.9, "gaussian:1.5": 0.8},
                                     class_names=small_mnist.class_names, n_show=2)
    assert [p.value for p in panels] == ["none", "Gaussian σ=1.5"]
    assert all(p.png.startswith(PNG) for p in panels) and panels[0].png != panels[1].png
    assert "80.0 %" in panels[1].html and "‖δ‖₂" in panels[1].html
    with pytest.raises(ValueError, match="accuracy"):
        widgets.defended_panels(attacks, small_mnist.x_test, accuracy={"none": 0.9}, class_names=small_mnist.class_names)
