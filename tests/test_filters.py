import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from helpers.defences.filters import (
    NONE,
    OPT_MED9,
    Defence,
    GaussianBlur,
    MedianFilter,
    median_network,
    merge_exchange_network,
    model_defence,
    study_grid,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((2, 11, 9, 3)).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.5, 4.0])
def test_gaussian_matches_scipy(images, sigma):
    ours = np.asarray(GaussianBlur(sigma)(images))
    ref = ndimage.gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("size", [3, 5, 7, 13])
def test_median_matches_scipy_exactly(images, size):
    ours = np.asarray(MedianFilter(size)(images))
    ref = ndimage.median_filter(images, size=(1, size, size, 1), mode="reflect")
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("size", [3, 5, 7, 9])
@pytest.mark.parametrize("draw", range(3))
def test_median_matches_scipy_exactly_with_ties_and_random_floats(size, draw):
    rng = np.random.default_rng(100 + draw)
    shape = (2, int(rng.integers(size // 2 + 1, 17)), int(rng.integers(size // 2 + 1, 17)), int(rng.integers(1, 4)))
    ties = rng.choice(np.float32([0.0, 0.5, 1.0]), size=shape)  # most windows hold many equal values
    floats = rng.standard_normal(shape).astype(np.float32)
    for x in (ties, floats):
        np.testing.assert_array_equal(np.asarray(MedianFilter(size)(x)), ndimage.median_filter(x, size=(1, size, size, 1), mode="reflect"))


def _run(pairs, values):
    values = list(values)
    for a, b in pairs:
        values[a], values[b] = min(values[a], values[b]), max(values[a], values[b])
    return values


@pytest.mark.parametrize("n", [2, 3, 5, 9, 12])
def test_merge_exchange_network_sorts_every_zero_one_input(n):
    # The 0-1 principle: a comparator network that sorts every 0/1 sequence sorts every sequence.
    pairs = merge_exchange_network(n)
    for bits in itertools.product((0, 1), repeat=n):
        assert _run(pairs, bits) == sorted(bits)


def test_opt_med9_and_the_pruned_networks_select_the_median_of_every_zero_one_input():
    for bits in itertools.product((0, 1), repeat=9):
        assert _run(OPT_MED9, bits)[4] == sorted(bits)[4]
        sorted_columns = [v for c in range(3) for v in sorted(bits[3 * c : 3 * c + 3])]
        wires = list(sorted_columns)
        for a, b, need_min, need_max in median_network(3)[1]:
            low, high = min(wires[a], wires[b]), max(wires[a], wires[b])
            wires[a] = low if need_min else wires[a]
            wires[b] = high if need_max else wires[b]
        assert wires[4] == sorted(bits)[4]
    assert len(median_network(3)[1]) == len(OPT_MED9) - 9


def test_single_channel_and_many_channels():
    x = np.random.default_rng(1).random((1, 8, 8, 5)).astype(np.float32)
    ref = ndimage.gaussian_filter(x, sigma=(0, 1.5, 1.5, 0), mode="reflect")
    np.testing.assert_allclose(np.asarray(GaussianBlur(1.5)(x)), ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(MedianFilter(3)(x[..., :1])), ndimage.median_filter(x[..., :1], size=(1, 3, 3, 1), mode="reflect"))


def test_zero_sigma_and_unit_window_are_identity(images):
    np.testing.assert_array_equal(np.asarray(GaussianBlur(0.0)(images)), images)
    np.testing.assert_array_equal(np.asarray(MedianFilter(1)(images)), images)


def test_blur_really_blurs_a_checkerboard():
    board = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.float32)[None, :, :, None]
    blurred = np.asarray(GaussianBlur(1.5)(board))
    assert np.abs(blurred - board).mean() > 0.4 and blurred.std() < 0.05


def test_median_removes_impulses_but_keeps_edges():
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, :, 8:] = 1.0  # a vertical edge
    noisy = image.copy()
    noisy[0, 3, 3] = noisy[0, 10, 12] = 0.5  # isolated impulses
    np.testing.assert_array_equal(np.asarray(MedianFilter(3)(noisy)), image)
    assert np.abs(np.asarray(GaussianBlur(1.5)(image)) - image).max() > 0.3  # the Gaussian smears the edge


def test_gradients_flow_through_both_filters(images):
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        g_out = tf.reduce_sum(GaussianBlur(1.5)(x))
        m_out = tf.reduce_sum(MedianFilter(3)(x))
    g_grad = tape.gradient(g_out, x).numpy()
    m_grad = tape.gradient(m_out, x).numpy()
    assert np.isfinite(g_grad).all() and np.isfinite(m_grad).all()
    # The Gaussian kernel sums to one, so the total gradient equals the number of outputs; the median
    # routes each output's gradient to exactly one input pixel.
    assert g_grad.sum() == pytest.approx(images.size, rel=1e-4)
    assert m_grad.sum() == pytest.approx(images.size)
    assert set(np.unique(m_grad)) <= set(range(10))


@pytest.mark.parametrize("size", [3, 5])
def test_median_gradient_reaches_one_pixel_per_output_also_with_ties(size):
    x = tf.constant(np.random.default_rng(3).choice(np.float32([0.0, 0.5, 1.0]), size=(2, 9, 8, 2)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = MedianFilter(size)(x)
    grad = tape.gradient(out, x).numpy()
    # min/max send a tie's gradient to one argument, so the counts are integers summing to the number of outputs
    # (integers below 2**24 add exactly in float32).
    assert grad.sum() == out.shape.num_elements() and np.array_equal(grad, np.round(grad)) and grad.min() >= 0


def test_layers_are_not_trainable_and_same_in_training_and_inference(images):
    for layer in (GaussianBlur(1.0), MedianFilter(3)):
        assert not layer.trainable and not layer.weights
        np.testing.assert_array_equal(np.asarray(layer(images, training=True)), np.asarray(layer(images, training=False)))


def test_layers_survive_keras_save_and_safe_load(tmp_path, images):
    inputs = keras.Input((11, 9, 3))
    model = keras.Model(inputs, MedianFilter(3)(GaussianBlur(1.5)(inputs)))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=1e-7)


def test_defence_parses_prints_and_builds_its_layer():
    assert Defence.parse("none") is NONE and Defence.parse("none").layer() is None
    gauss, median = Defence.parse("gaussian:1.5"), Defence.parse("median:5")
    assert isinstance(gauss.layer(), GaussianBlur) and gauss.layer().sigma == 1.5 and gauss.parameter == 1.5
    assert isinstance(median.layer(), MedianFilter) and median.layer().size == 5 and median.parameter == 5
    assert gauss.label == "Gaussian σ=1.5" and Defence.parse("median:3").label == "median 3×3"
    for spec in ("none", "gaussian:1.5", "gaussian:0.5", "median:3", "median:7"):
        assert str(Defence.parse(spec)) == spec  # the public spelling round-trips
    assert Defence.parse(" Gaussian:2.50 ") == Defence("gaussian", 2.5) and Defence.parse(gauss) is gauss
    assert Defence.parse("gaussian:0") is NONE and Defence.of("median", 1) is NONE  # identity values are no filter
    assert {Defence.parse("gaussian:1.5"): 1}[gauss] == 1  # frozen values: usable as dict keys


def test_study_grid_puts_none_first_and_drops_duplicates():
    grid = study_grid({"gaussian": [0, 0.5, 1.5, 0.5], "median": [1, 3, 5]})
    assert [str(d) for d in grid] == ["none", "gaussian:0.5", "gaussian:1.5", "median:3", "median:5"]


def test_model_defence_reads_the_filter_back_from_a_model():
    from helpers.training.models import build_model

    for spec in ("none", "gaussian:1.5", "median:3"):
        model = build_model("small_cnn", input_shape=(12, 12, 1), num_classes=3, defence=spec)
        assert str(model_defence(model)) == spec


@pytest.mark.parametrize("spec", ["gaussian:1.5", "median:3", "none"])
def test_reference_is_scipy(images, spec):
    defence = Defence.parse(spec)
    np.testing.assert_allclose(defence.apply(images), defence.reference(images), atol=1e-5)


@pytest.mark.parametrize(
    "spec, error",
    [("gaussian:-1", ValueError), ("gaussian:abc", ValueError), ("gaussian:nan", ValueError), ("median:4", ValueError),
     ("median:0", ValueError), ("median:2.5", ValueError), ("blur:3", ValueError), (1.5, TypeError)],
)
def test_parse_defence_rejects_bad_specs(spec, error):
    with pytest.raises(error, match="defence"):
        Defence.parse(spec)


def test_bad_layer_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(-0.5)
    with pytest.raises(ValueError, match="size"):
        MedianFilter(4)
    with pytest.raises(TypeError, match="size"):
        MedianFilter(3.0)


def test_apply_defence_matches_layer(images):
    np.testing.assert_array_equal(Defence.parse("median:3").apply(images), np.asarray(MedianFilter(3)(images)))
    np.testing.assert_array_equal(Defence.parse("none").apply(images), images)
