"""The optional bfloat16 mode: a copy of a model that computes in bfloat16, and what it changes in an attack."""

import dataclasses

import keras
import numpy as np
import pytest

from helpers.attacks.attack import targeted_attack
from helpers.core.engine import architecture_key, predict_logits
from helpers.training.models import bfloat16_copy, build_model


def test_the_copy_computes_in_bfloat16_but_its_filter_and_logits_stay_float32():
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence="gaussian:1")
    fast = bfloat16_copy(model)
    kinds = {type(layer).__name__: layer.compute_dtype for layer in fast.layers}
    assert kinds["Conv2D"] == "bfloat16" and kinds["GaussianBlur"] == "float32"
    assert fast.layers[-1].compute_dtype == "float32"
    assert all(layer.compute_dtype == "float32" for layer in model.layers)  # the original is untouched
    for a, b in zip(model.get_weights(), fast.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert architecture_key(fast) != architecture_key(model)  # no compiled function is shared between the two modes
    x = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    out = fast(x)
    assert out.dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: the logits agree to about 1 %, not to float32's rounding.
    reference = model(x).numpy()
    assert 0 < np.abs(out.numpy() - reference).max() <= 0.05 * np.abs(reference).max()


def test_the_copy_of_a_nested_backbone_computes_in_bfloat16_inside():
    model = build_model("inception_v3", input_shape=(75, 75, 3), num_classes=3)
    fast = bfloat16_copy(model)
    inner = [layer for layer in fast.layers if isinstance(layer, keras.Model)]
    assert inner and any(layer.compute_dtype == "bfloat16" for layer in inner[0].layers if "conv" in layer.name)


def test_an_attack_through_the_copy_fools_the_float32_model(trained, correct_subset):
    images, _, targets = correct_subset
    fast = bfloat16_copy(trained.model)
    result = targeted_attack(fast, images[:40], targets[:40], step=0.1, progress=False)
    reached = predict_logits(trained.model, result.adversarial).argmax(axis=1) == targets[:40]
    # It stops where the bfloat16 copy reaches the target; on the float32 model most of those points do too.
    assert result.success.mean() > 0.9 and reached.mean() > 0.7


def test_a_non_model_fails_naming_the_parameter():
    with pytest.raises(TypeError, match="^model:"):
        bfloat16_copy("small_cnn")


@pytest.mark.slow
def test_the_chapter_section_times_both_modes_and_judges_bfloat16s_adversarials_on_float32(trained, correct_subset):
    from helpers.bench.bfloat16_runs import bfloat16_mode

    images, labels, targets = (a[:8] for a in correct_subset)
    # Without bfloat16 arithmetic (emulated, about ten times slower) every timing runs one round, whatever repeats says.
    mode = bfloat16_mode(trained.model, trained.model, images, labels, targets, step=0.1, max_steps=200, minnorm_steps=20,
                         inception_batch=4, small_batch=8, repeats=2, native=False)
    speedups = mode.speedups()
    assert set(speedups) == {"matmul", "inception_v3", "small_cnn", "paper", "ddn"}
    assert all(len(v) == 3 for k, v in speedups.items() if k not in ("paper", "ddn")) and len(speedups["ddn"]) == 1
    assert not mode.available and mode.glued()["bf16_speed_sentence"].startswith("This CPU has no bfloat16 arithmetic")
    assert f"{np.median(speedups['ddn']):.2f}× (DDN)" in mode.glued()["bf16_speed_sentence"]
    assert "steps are timed in 3 rounds and the attacks in 1," in mode.glued()["bf16_speed_sentence"]
    assert dataclasses.replace(mode, available=True).glued()["bf16_speed_sentence"].startswith("bfloat16 ran tf.matmul at")
    assert "`" not in mode.glued()["bf16_speed_sentence"]  # glued text is shown as plain text, not Markdown
    for attack in mode.attacks.values():
        assert 0 <= attack.kept_on_float32 <= attack.success["bfloat16"] <= 1
        assert 0.9 < attack.l2_ratio[0] < 1.1 and attack.l2_ratio[1] <= attack.l2_ratio[0] <= attack.l2_ratio[2]
    glued = mode.glued()
    assert glued["bf16_kept_sentence"].startswith("An attack stops as soon as the bfloat16 copy predicts the target")
    assert list(mode.quality_table().data.columns)[:4] == ["attack", "reached % (f32 / bf16)", "bf16's reach it on f32 %", "median ‖δ‖₂ (f32 / bf16)"]
    assert mode.record()["attacks"]["ddn"]["l2_ratio"] == list(mode.attacks["ddn"].l2_ratio)
    mode.attacks["ddn"].kept_on_float32 = 0.9
    assert "90.0 % of DDN's" in mode.glued()["bf16_kept_sentence"] and "checked, or finished, in float32" in mode.glued()["bf16_kept_sentence"]
