"""Chapter 1's architecture study and figures: one small architecture, a few digits, a temporary model cache."""

import numpy as np

from helpers.book.attack_figures import architecture_examples_figure, extremes_figure, steps_figure, visibility_figure
from helpers.studies.architectures import attack_architectures
from helpers.studies.evaluate import perceptibility


def test_attack_architectures_rows_rms_and_examples(tmp_path):
    found = attack_architectures(["small_cnn"], dataset="mnist", image_sizes={"small_cnn": 28}, n_images=400, epochs=1,
                                 batch_size=64, weights=None, n_attack=6, step=0.5, max_steps=100, seed=0,
                                 cache_dir=str(tmp_path))
    row = found.rows[0]
    assert row["model"] == "small_cnn" and row["image_size"] == 28 and row["n_attacked"] == 6
    assert found.sizes == {"small_cnn": 28} and found.rms["small_cnn"].shape == (6,)
    assert found.n_train > 0 and list(tmp_path.glob("small_cnn-*.keras"))  # trained into the given cache
    if row["success_rate"] > 0:
        image, adversarial, clean, attacked, target, _ = found.examples["small_cnn"]
        assert attacked.argmax(axis=1)[0] == target[0] and image.shape == adversarial.shape
        assert len(architecture_examples_figure(found.examples).axes) > 0
    failed = ~np.isfinite(found.rms["small_cnn"])  # a failed attack counts as infinitely far
    assert failed.sum() == round(6 * (1 - row["success_rate"]))


def test_chapter1_figures_draw_with_and_without_successes():
    rng = np.random.default_rng(0)
    images = rng.random((12, 6, 6, 1)).astype(np.float32)
    adversarial = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1).astype(np.float32)
    ok = np.arange(12) % 3 != 0
    visible = perceptibility(images, adversarial)
    assert len(steps_figure(np.arange(12), ok).axes) == 1
    assert len(steps_figure(np.arange(12), np.zeros(12, bool)).axes[0].texts) == 1  # says no attack reached its target
    assert len(visibility_figure(visible, ok).axes) == 3
    assert len(extremes_figure(images, adversarial, visible["rms"], ok, n=3).axes) == 4 * 3
