"""A new filter kind needs one registration and nothing else: a 3×3 box blur goes through parsing, the model,
BPDA, the slider panels and a quick training without any other file knowing about it."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from helpers.defences import filters


@keras.saving.register_keras_serializable(package="tests")
class BoxBlur(keras.layers.Layer):
    """Mean of the size×size window, reflect borders (scipy's uniform_filter)."""

    def __init__(self, size: int = 3, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.size = int(size)

    def call(self, inputs):
        pad = self.size // 2
        padded = filters.reflect_pad(inputs, pad)
        kernel = tf.ones((self.size, self.size, inputs.shape[-1], 1)) / self.size**2
        return tf.nn.depthwise_conv2d(padded, kernel, strides=(1, 1, 1, 1), padding="VALID")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _check_box(value):
    if float(value) != int(value) or int(value) < 1 or int(value) % 2 == 0:
        raise ValueError(f"defence: the box window must be a positive odd integer, got {value!r}")
    return float(int(value))


BOX = filters.FilterKind(
    name="box", title="box", symbol="b", parameter_name="window", identity=1.0, check=_check_box,
    format=lambda v: f"{int(v)}", label=lambda v: f"box {int(v)}×{int(v)}", layer=lambda v: BoxBlur(int(v)),
    layer_class=BoxBlur, layer_value=lambda layer: float(layer.size),
    reference=lambda x, v: ndimage.uniform_filter(x, size=(1, int(v), int(v), 1), mode="reflect"), linear=True, slider_step=2,
)


@pytest.fixture
def box_registered():
    filters.register_filter_kind(BOX)
    yield BOX
    del filters.FILTER_KINDS[BOX.name]


def test_a_registered_kind_works_everywhere(box_registered, tmp_path):
    from helpers.attacks.adaptive import StraightThrough, bpda_model, has_defence
    from helpers.book import widgets
    from helpers.studies.evaluate import filter_transfer
    from helpers.studies.results import transfer_table
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached

    box = filters.Defence.parse("box:3")
    assert str(box) == "box:3" and box.label == "box 3×3" and filters.Defence.parse("box:1") is filters.NONE
    with pytest.raises(ValueError, match="defence"):
        filters.Defence.parse("box:4")
    assert [str(d) for d in filters.study_grid({"gaussian": [0, 1], "box": [3]})] == ["none", "gaussian:1", "box:3"]

    data = load_dataset("digits", seed=0)
    images = data.x_test[:6]
    np.testing.assert_allclose(box.apply(images), box.reference(images), atol=1e-6)

    trained = fit_cached("small_cnn", data, defence="box:3", epochs=1, cache_dir=tmp_path, verbose=0)
    assert str(filters.model_defence(trained.model)) == "box:3" and has_defence(trained.model)
    again = fit_cached("small_cnn", data, defence=box, epochs=1, cache_dir=tmp_path, verbose=0)
    assert again.from_cache and str(filters.model_defence(again.model)) == "box:3"

    attacker = bpda_model(trained.model)
    assert any(isinstance(layer, StraightThrough) for layer in attacker.layers)
    np.testing.assert_array_equal(attacker(images).numpy(), trained.model(images).numpy())

    rows = filter_transfer(trained.model, images, data.y_test[:6], images, data.y_test[:6], ["none", "box:3"])
    for row in rows:
        row["window"] = filters.Defence.parse(row["defence"]).parameter
    assert transfer_table("box").name == "box_transfer.csv"
    panels = widgets.blur_panels(trained.model, rows, kind="box", images=images, labels=data.y_test[:6], adversarial=images,
                                 targets=(data.y_test[:6] + 1) % 10, l2=np.zeros(6), class_names=data.class_names, n_show=2)
    assert [p.value for p in panels] == ["1", "3"] and panels[1].html.startswith("<div><span")
    assert widgets.grid_specs("box", [1, 3, 5]) == ["none", "box:3", "box:5"]
