"""The benchmark helpers behind the performance chapter: behaviour only, never wall-clock speed."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import benchmark as bm
from helpers.attack import run_engine, targeted_attack
from helpers.filters import GaussianBlur, MedianFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny():
    """A small random conv net on 8x8 grey images, with random images and targets."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    rng = np.random.default_rng(0)
    images = rng.random((12, 8, 8, 1), dtype=np.float32)
    targets = (model(images).numpy().argmax(1) + 1 + rng.integers(0, 3, size=12)) % 4
    return model, images, targets


def test_seed_loop_reaches_the_same_targets_in_the_same_steps_as_the_engine(tiny):
    model, images, targets = tiny
    seed = bm.seed_loop_attack(model, images, targets, step=0.1, max_steps=150)
    engine = targeted_attack(model, images, targets, step=0.1, max_steps=150, progress=False)
    assert seed.success.mean() >= 0.5
    np.testing.assert_array_equal(seed.success, engine.success)
    np.testing.assert_array_equal(seed.steps, engine.steps)
    np.testing.assert_allclose(seed.l2, engine.l2, atol=1e-4)
    predicted = model(seed.adversarial).numpy().argmax(1)
    np.testing.assert_array_equal(predicted[seed.success], targets[seed.success])


def test_seed_loop_stalls_on_a_zero_gradient_like_the_engine():
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0]))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    images = np.full((3, 6, 6, 1), 0.5, np.float32)
    result = bm.seed_loop_attack(model, images, np.array([1, 2, 0]), max_steps=20)
    np.testing.assert_array_equal(result.stalled, [True, True, False])
    np.testing.assert_array_equal(result.success, [False, False, True])
    np.testing.assert_array_equal(result.adversarial, images)


def test_engine_spends_only_the_evaluations_the_examples_need(tiny):
    model, images, targets = tiny
    for batch_size in (3, 64):
        result, stats = run_engine(model, images, targets, max_steps=150, batch_size=batch_size, progress=False)
        assert stats.needed == int((result.steps + 1).sum())
        assert stats.evaluations == stats.needed and stats.efficiency == 1.0
        assert max(stats.widths) == min(batch_size, len(images))


def test_early_stopping_costs_of_known_steps():
    costs = bm.early_stopping_costs(np.array([0, 1, 5, 2]), batch_size=2, max_steps=10)
    assert costs == {"engine": 12, "whole_batch": 16, "slowest": 24, "max_steps": 44}


def test_flops_are_counted_from_layer_shapes():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    conv, dense = 2 * 6 * 6 * 8 * 3 * 3 * 2, 2 * 288 * 3
    assert bm.forward_flops(model) == conv + dense
    assert bm.forward_flops(model, dense=False) == conv
    assert bm.attack_step_flops(model) == 2 * (conv + dense)
    nested = keras.Model(inputs, model(inputs))  # layers of a nested model count too
    assert bm.forward_flops(nested) == conv + dense


def test_interleaved_times_alternate_the_contenders_after_an_untimed_warmup():
    calls = []
    times = bm.interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError, match="repeats"):
        bm.interleaved_times({"a": lambda: None}, repeats=0)
    with pytest.raises(TypeError, match="contenders"):
        bm.interleaved_times({"a": 3}, repeats=1)


def test_steps_for_success_grows_until_the_goal_and_respects_the_limit():
    steps, rate, tried = bm.steps_for_success(lambda k: min(1.0, k / 100), goal=0.5, start=10, limit=1000)
    assert rate >= 0.5 and steps == tried[-1][0] and all(r < 0.5 for _, r, _ in tried[:-1])
    assert [k for k, _, _ in tried][:3] == [10, 13, 17]
    steps, rate, tried = bm.steps_for_success(lambda k: 0.0, goal=1.0, start=5, limit=20)
    assert steps == 20 and rate == 0.0 and tried[-1][0] == 20


def test_scipy_filter_matches_the_layers():
    x = np.random.default_rng(1).random((3, 12, 12, 2), dtype=np.float32)
    np.testing.assert_allclose(bm.scipy_filter("gaussian:1.5", x), np.asarray(GaussianBlur(1.5)(x)), atol=1e-5)
    np.testing.assert_array_equal(bm.scipy_filter("median:3", x), np.asarray(MedianFilter(3)(x)))
    np.testing.assert_array_equal(bm.scipy_filter("none", x), x)


def test_gaussian_layer_gradient_is_the_adjoint_of_the_blur():
    # The layer blurs with matrix products; its gradient must match finite differences, borders included.
    x = tf.constant(np.random.default_rng(2).random((2, 9, 11, 1), dtype=np.float32))
    weights = tf.constant(np.random.default_rng(3).random((2, 9, 11, 1), dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(GaussianBlur(1.0)(x) * weights)
    grad = tape.gradient(value, x).numpy()
    eps = 1e-2
    for index in [(0, 0, 0, 0), (1, 4, 5, 0), (0, 8, 10, 0)]:
        bump = np.zeros(x.shape, np.float32)
        bump[index] = eps
        numeric = (tf.reduce_sum(GaussianBlur(1.0)(x + bump) * weights) - value).numpy() / eps
        assert abs(numeric - grad[index]) < 1e-3


def test_training_step_times_cover_every_variant():
    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 40)
    times = bm.training_step_times("small_cnn", images, labels, defences=["gaussian:1.0", "median:3"], num_classes=3,
                                   batch_size=16, n_batches=2, repeats=1)
    assert set(times) == {"none", "layer gaussian:1.0", "scipy gaussian:1.0", "layer median:3", "scipy median:3"}
    assert all(len(v) == 2 for v in times.values())
    with pytest.raises(ValueError, match="batch_size"):
        bm.training_step_times("small_cnn", images[:8], labels[:8], defences=[], num_classes=3, batch_size=16)


def test_op_time_profile_names_the_ops_that_ran():
    a = tf.constant(np.ones((64, 64), np.float32))
    product = tf.function(lambda: tf.matmul(a, a))
    seconds = bm.op_time_profile(product, calls=2)
    assert any("MatMul" in op for op in seconds), seconds
    assert all(v >= 0 for v in seconds.values())


def test_run_log_rows_keep_every_profile():
    log = {"profile": "quick", "notebooks": {"01_attack": {"seconds": 3.0, "peak_mib": 900.0}},
           "by_profile": {"default": {"01_attack": {"seconds": 30.0, "peak_mib": 1000.0}},
                          "quick": {"01_attack": {"seconds": 1.0, "peak_mib": 1.0}}}}
    rows = bm.run_log_rows(log)
    assert {(r["profile"], r["seconds"]) for r in rows} == {("default", 30.0), ("quick", 3.0)}
    assert bm.run_log_rows({}) == []


def test_goal_rows():
    assert bm.goal_row("x", 7.0, at_least=6)["met"] is True
    assert bm.goal_row("x", 0.4, at_most=0.3)["met"] is False
    assert bm.goal_row("x", None, at_least=3)["met"] is None
    with pytest.raises(ValueError):
        bm.goal_row("x", 1.0)


def test_machine_info_and_library_versions():
    info = bm.machine_info()
    assert info["cores"] >= 1 and info["tensorflow"] == tf.__version__ and isinstance(info["simd"], list)
    assert set(bm.library_versions()) == set(bm.LIBRARIES)


@pytest.mark.parametrize("library", sorted(bm.LIBRARIES))
def test_libraries_take_the_same_steps_as_the_engine(tiny, library):
    if bm.library_versions()[library] is None:
        pytest.skip(f"{library} is not installed (requirements-bench.txt)")
    model, images, targets = tiny
    adversarial = bm.library_attack(library, model, step=0.1, batch_size=5)(images, targets, 4)
    engine = targeted_attack(model, images, targets, step=0.1, max_steps=4, progress=False)
    moved_all = engine.steps == 4  # the engine did not stop these early, so both took the same 4 steps
    assert moved_all.sum() >= 3
    np.testing.assert_allclose(adversarial[moved_all], engine.adversarial[moved_all], atol=1e-5)
    assert bm.success_rate(model, adversarial, targets) >= engine.success.mean() - 1e-9


def test_library_attack_rejects_unknown_names(tiny):
    with pytest.raises(ValueError, match="library"):
        bm.library_attack("cleverhans", tiny[0])


@pytest.mark.notebooks
def test_quick_benchmark_json_has_the_expected_keys(quick_book):
    results = json.loads((ROOT / "data" / "results" / "benchmark.json").read_text())
    for key in ("machine", "libraries", "engine", "seed_loop", "libraries_compared", "batch_throughput", "xla",
                "gflops", "training_filters", "run_log", "goals"):
        assert key in results, key
    assert results["engine"]["efficiency"] == 1.0
    assert results["seed_loop"]["same_success"] is True
    assert len(results["goals"]) == 8 and all(g["met"] in (True, False, None) for g in results["goals"])
    for name, row in results["libraries_compared"].items():
        assert row["status"] == "ok" or row["status"] == "not installed" or row["status"].startswith("failed"), name
    page = (Path(quick_book) / "book" / "executed" / "07_performance.html").read_text()
    assert page.count("<img") >= 2
