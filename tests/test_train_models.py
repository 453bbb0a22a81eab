import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from tensorflow.python.framework import config as tf_config

from helpers.attacks.attack import targeted_attack
from helpers.defences.filters import model_defence
from helpers.training.data import load_dataset
from helpers.training.models import ARCHITECTURES, MIN_IMAGE_SIZE, build_model
from helpers.training.train import fit_cached, train_model


def test_reference_cnn_reaches_95_percent(trained, mnist):
    from helpers.studies.evaluate import clean_accuracy

    assert clean_accuracy(trained.model, mnist.x_test, mnist.y_test) >= 0.95
    assert len(trained.history["val_accuracy"]) == 5


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_images=400)


def test_cache_is_reused_and_other_arguments_retrain(digits, tmp_path):
    first = fit_cached("small_cnn", digits, defence="gaussian:1.0", epochs=1, cache_dir=tmp_path, verbose=0)
    assert not first.from_cache and first.path.exists()
    again = fit_cached("small_cnn", digits, defence="gaussian:1.0", epochs=1, cache_dir=tmp_path, verbose=0)
    assert again.from_cache and again.path == first.path and again.history == first.history
    for a, b in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = fit_cached("small_cnn", digits, defence="gaussian:1.0", epochs=1, seed=1, cache_dir=tmp_path, verbose=0)
    assert not other.from_cache and other.path != first.path
    assert isinstance(train_model("small_cnn", digits, defence="gaussian:1.0", epochs=1, cache_dir=tmp_path, verbose=0), keras.Model)


def test_corrupted_cache_is_rebuilt_with_a_warning(digits, tmp_path):
    first = fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path, verbose=0)
    first.path.write_bytes(b"not a keras file")
    with pytest.warns(UserWarning, match="not usable"):
        again = fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path, verbose=0)
    assert not again.from_cache
    assert fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path, verbose=0).from_cache


@pytest.mark.parametrize("defence", ["median:3", "gaussian:1.5"])
def test_filtering_the_data_once_trains_the_same_network_as_the_filter_layer(digits, tmp_path, defence):
    from helpers.training.train import LEARNING_RATE, deterministic

    fast = fit_cached("small_cnn", digits, defence=defence, epochs=2, cache_dir=tmp_path, verbose=0)
    assert str(model_defence(fast.model)) == defence
    with deterministic(0):
        slow = build_model("small_cnn", input_shape=digits.input_shape, num_classes=digits.num_classes, defence=defence)
        slow.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE["small_cnn"]),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        history = slow.fit(digits.x_train, digits.y_train, validation_data=(digits.x_test, digits.y_test), epochs=2,
                           batch_size=64, shuffle=True, verbose=0).history
    for a, b in zip(fast.model.get_weights(), slow.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # Weights agree to float noise; an accuracy may differ by one test image whose logit sits on a tie.
    np.testing.assert_allclose(fast.history["val_accuracy"], history["val_accuracy"], atol=1.5 / len(digits.x_test))


_ATTACK_CACHED = """
import sys
import numpy as np
from helpers.attacks.attack import targeted_attack
from helpers.training.data import load_dataset
from helpers.training.train import fit_cached

digits = load_dataset("digits", n_images=400)
fit = fit_cached("small_cnn", digits, epochs=1, cache_dir=sys.argv[1], verbose=0)
assert fit.from_cache
x, targets = digits.x_test[:24], (digits.y_test[:24] + 1) % digits.num_classes
np.save(sys.argv[2], targeted_attack(fit.model, x, targets, progress=False).adversarial)
"""


@pytest.mark.slow
def test_an_attack_gives_the_same_numbers_on_a_model_just_trained_or_loaded_from_the_cache(tmp_path):
    """Training switches TensorFlow's deterministic kernels on only while it runs. Left on, they changed every later
    attack in the process (its last digits and its speed), so a notebook that trained its model attacked it
    differently from one that found the model in the cache."""
    digits = load_dataset("digits", n_images=400)
    fresh = fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path, verbose=0)
    assert not fresh.from_cache and not tf_config.is_op_determinism_enabled()
    x, targets = digits.x_test[:24], (digits.y_test[:24] + 1) % digits.num_classes
    here = targeted_attack(fresh.model, x, targets, progress=False).adversarial
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", _ATTACK_CACHED, str(tmp_path), str(tmp_path / "there.npy")], env=env, check=True)
    np.testing.assert_array_equal(here, np.load(tmp_path / "there.npy"))


def test_training_is_deterministic(digits, tmp_path):
    a = fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path / "a", verbose=0)
    b = fit_cached("small_cnn", digits, epochs=1, cache_dir=tmp_path / "b", verbose=0)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_builds_with_its_defence_inside(arch):
    size = MIN_IMAGE_SIZE[arch] if arch != "small_cnn" else 28
    channels = 1 if arch == "small_cnn" else 3
    model = build_model(arch, input_shape=(size, size, channels), num_classes=3, defence="median:3")
    assert str(model_defence(model)) == "median:3"
    logits = model(np.random.default_rng(0).random((2, size, size, channels)).astype(np.float32))
    assert logits.shape == (2, 3)
    assert str(model_defence(build_model(arch, input_shape=(size, size, channels), num_classes=3, defence="gaussian:1.5"))) == "gaussian:1.5"


@pytest.mark.slow
def test_from_scratch_batch_norm_running_statistics_follow_training(tmp_path):
    model = build_model("resnet50", input_shape=(32, 32, 3), num_classes=3)
    norms = [layer for layer in model.get_layer("resnet50").layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 50 and all(layer.momentum == 0.9 for layer in norms)
    # One training step moves the first running mean 10 % of the way to the batch mean (Keras' default: 1 %).
    first = norms[0]
    backbone = model.get_layer("resnet50")
    probe = keras.Model(backbone.input, first.input)
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    batch_mean = keras.ops.convert_to_numpy(probe(model.get_layer("preprocess")(x))).mean(axis=(0, 1, 2))
    before = keras.ops.convert_to_numpy(first.moving_mean)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(x, np.zeros(8, dtype=np.int64))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first.moving_mean), 0.9 * before + 0.1 * batch_mean, rtol=1e-4, atol=1e-5)
    # The setting survives the model cache's save and load.
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert reloaded.get_layer("resnet50").get_layer(first.name).momentum == 0.9


def test_imagenet_weights_offline_fail_with_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="weights: .*vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5") as info:
        build_model("vgg16", input_shape=(32, 32, 3), num_classes=3, weights="imagenet")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_local_weights_file_is_loaded(tmp_path):
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "vgg16_notop.weights.h5"
    backbone.save_weights(path)
    model = build_model("vgg16", input_shape=(32, 32, 3), num_classes=3, weights=path)
    loaded = model.get_layer("vgg16").get_weights()
    for a, b in zip(backbone.get_weights(), loaded, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, error, param",
    [({"arch": "alexnet"}, ValueError, "arch"), ({"input_shape": (32, 32, 3), "arch": "inception_v3"}, ValueError, "input_shape"),
     ({"num_classes": 1}, ValueError, "num_classes"), ({"defence": "median:2"}, ValueError, "defence"),
     ({"weights": "/no/such/file.h5", "arch": "vgg16"}, FileNotFoundError, "weights"), ({"weights": "imagenet"}, ValueError, "weights")],
)
def test_build_model_bad_arguments(kwargs, error, param):
    args = {"arch": "small_cnn", "input_shape": (32, 32, 3), "num_classes": 3} | kwargs
    with pytest.raises(error, match=param):
        build_model(args.pop("arch"), **args)


@pytest.mark.parametrize(
    "kwargs, error, param",
    [({"epochs": 0}, ValueError, "epochs"), ({"batch_size": -4}, ValueError, "batch_size"),
     ({"arch": "vgg19"}, ValueError, "arch"), ({"defence": "gaussian:-2"}, ValueError, "defence"),
     ({"dataset": "mnist"}, TypeError, "dataset")],
)
def test_train_model_bad_arguments_fail_before_training(digits, tmp_path, kwargs, error, param):
    args = {"arch": "small_cnn", "dataset": digits, "epochs": 1} | kwargs
    with pytest.raises(error, match=param):
        train_model(args.pop("arch"), args.pop("dataset"), cache_dir=tmp_path, **args)
    assert not any(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore::UserWarning")  # Keras warns about each layer it skips before failing
def test_weights_of_another_architecture_fail_with_one_line(tmp_path):
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Dense(2)])
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match=r"^weights: .*does not fit vgg16 without its top \(expected Keras' vgg16_weights") as error:
        build_model("vgg16", input_shape=(32, 32, 3), num_classes=3, weights=path)
    assert "\n" not in str(error.value)
