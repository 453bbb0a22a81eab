import keras
import numpy as np
import pytest

from helpers.attacks.attack import targeted_attack
from helpers.studies.evaluate import predict_logits


def test_attack_reaches_its_target_on_trained_cnn(trained, correct_subset):
    images, labels, targets = correct_subset
    result = targeted_attack(trained.model, images, targets, progress=False)
    assert result.success.mean() >= 0.99
    predicted = predict_logits(trained.model, result.adversarial).argmax(1)
    np.testing.assert_array_equal(predicted[result.success], targets[result.success])
    assert (result.adversarial >= 0).all() and (result.adversarial <= 1).all()
    assert (result.steps[result.success] >= 1).all() and not result.stalled.any()
    np.testing.assert_allclose(result.l2, np.linalg.norm((result.adversarial - images).reshape(len(images), -1), axis=1), rtol=1e-5)


def test_paper_listing_objective_also_succeeds(trained, correct_subset):
    images, _, targets = correct_subset
    result = targeted_attack(trained.model, images[:30], targets[:30], objective="target_probability", progress=False)
    assert result.success.mean() >= 0.9


@pytest.mark.parametrize("step", [0.05, 0.1, 0.7])
def test_every_step_has_length_alpha_before_clipping(trained, correct_subset, step):
    images, _, targets = correct_subset
    for n in (1, 3):
        result = targeted_attack(trained.model, images[:20], targets[:20], step=step, max_steps=n, clip=None, progress=False)
        moved = result.steps == n
        assert moved.sum() >= 15
        if n == 1:
            np.testing.assert_allclose(result.l2[moved], step, rtol=1e-5)
        else:  # the path length is n·α, so the distance is at most that
            assert (result.l2[moved] <= n * step * (1 + 1e-5)).all()


def test_finished_examples_stop_moving(trained, correct_subset):
    images, labels, targets = correct_subset
    short = targeted_attack(trained.model, images[:40], targets[:40], max_steps=10, progress=False)
    long = targeted_attack(trained.model, images[:40], targets[:40], max_steps=200, progress=False)
    done = short.success
    assert 0 < done.sum() < 40
    # Exact: up to step 10 both runs compute the same working batch with the same shapes, in the same order.
    np.testing.assert_array_equal(long.adversarial[done], short.adversarial[done])
    np.testing.assert_array_equal(long.steps[done], short.steps[done])
    # An image that is already classified as its target never moves.
    already = targeted_attack(trained.model, images[:5], labels[:5], progress=False)
    assert already.success.all() and (already.steps == 0).all()
    np.testing.assert_array_equal(already.adversarial, images[:5])


def test_working_batch_size_does_not_change_results(trained, correct_subset):
    images, _, targets = correct_subset
    big = targeted_attack(trained.model, images[:37], targets[:37], batch_size=256, progress=False)
    small = targeted_attack(trained.model, images[:37], targets[:37], batch_size=5, chunk_steps=3, progress=False)
    # Other batch widths round the convolutions differently (oneDNN picks kernels by shape; AVX-512/AMX CPUs
    # round differently again), so paths may drift by float noise — never by a whole step of length 0.1. A drift
    # may at most move an image across its target boundary one step earlier or later.
    step = 0.1
    np.testing.assert_array_equal(big.success, small.success)
    assert (np.abs(big.steps - small.steps) <= 1).all() and (big.steps == small.steps).mean() >= 0.9
    same = big.steps == small.steps
    np.testing.assert_allclose(big.l2[same], small.l2[same], atol=step / 100)
    np.testing.assert_allclose(big.l2, small.l2, atol=step)


def test_zero_gradient_gives_no_nan_and_no_success():
    inputs = keras.Input((6, 6, 1))
    dense = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0]))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    images = np.full((4, 6, 6, 1), 0.5, np.float32)
    result = targeted_attack(model, images, np.array([1, 2, 1, 0]), max_steps=50, progress=False)
    assert np.isfinite(result.adversarial).all()
    np.testing.assert_array_equal(result.stalled, [True, True, True, False])
    np.testing.assert_array_equal(result.success, [False, False, False, True])
    np.testing.assert_array_equal(result.adversarial, images)


def test_max_steps_zero_only_checks(trained, correct_subset):
    images, labels, targets = correct_subset
    result = targeted_attack(trained.model, images[:4], targets[:4], max_steps=0, progress=False)
    assert not result.success.any() and (result.steps == 0).all() and (result.l2 == 0).all()


@pytest.mark.parametrize(
    "kwargs, error, param",
    [({"step": 0.0}, ValueError, "step"), ({"step": float("nan")}, ValueError, "step"),
     ({"max_steps": -1}, ValueError, "max_steps"), ({"max_steps": 2.5}, TypeError, "max_steps"),
     ({"batch_size": 0}, ValueError, "batch_size"), ({"objective": "hinge"}, ValueError, "objective"),
     ({"clip": (1.0, 0.0)}, ValueError, "clip"), ({"targets": np.array([0, 1])}, ValueError, "targets"),
     ({"targets": np.array([0, 1, 10])}, ValueError, "targets"), ({"targets": np.array([0.5, 1, 2])}, TypeError, "targets"),
     ({"images": np.zeros((3, 28, 28))}, ValueError, "images"), ({"images": np.full((3, 28, 28, 1), np.nan)}, ValueError, "images"),
     ({"images": np.full((3, 28, 28, 1), 2.0)}, ValueError, "images"), ({"images": np.zeros((0, 28, 28, 1))}, ValueError, "images")],
)
def test_bad_arguments_fail_fast_naming_the_parameter(trained, kwargs, error, param):
    args = {"images": np.zeros((3, 28, 28, 1), np.float32), "targets": np.array([0, 1, 2])} | kwargs
    images, targets = args.pop("images"), args.pop("targets")
    with pytest.raises(error, match=param) as info:
        targeted_attack(trained.model, images, targets, progress=False, **args)
    assert "\n" not in str(info.value)


def test_an_attacked_model_is_freed_with_its_compiled_functions():
    import gc
    import weakref

    from helpers.core.engine import compiled

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(0).random((5, 4, 4, 1)).astype(np.float32)
    targeted_attack(model, images, np.array([0, 1, 2, 0, 1]), max_steps=3, progress=False)
    first = compiled(model, ("paper attack, refilled in the loop", "cross_entropy"), lambda m: None)
    again = compiled(model, ("paper attack, refilled in the loop", "cross_entropy"), lambda m: None)
    assert first.__wrapped__ is not None and again.__wrapped__ is first.__wrapped__  # reused, not rebuilt
    gone = weakref.ref(model)
    del model, first, again
    gc.collect()
    assert gone() is None  # no global table keeps an attacked model (and its memory) alive
