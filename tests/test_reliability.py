"""Bad inputs fail fast with one-line messages naming the parameter; caches survive crashes; reruns are bit-stable."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.attacks.attack import targeted_attack
from helpers.book.notebook import check_parameters
from helpers.book.profiles import profile_parameters
from helpers.core.io import write_csv
from helpers.defences.filters import Defence, GaussianBlur, MedianFilter
from helpers.studies.evaluate import attack_evaluation, clean_accuracy
from helpers.training.data import load_dataset
from helpers.training.models import build_model
from helpers.training.train import fit_cached, train_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = load_dataset("digits", n_images=300)
    fit = fit_cached("small_cnn", data, epochs=1, cache_dir=tmp_path_factory.mktemp("tiny"), verbose=0)
    return data, fit.model


def _images(n=3, size=8):
    return np.full((n, size, size, 1), 0.5, np.float32)


# Each case: (name, callable taking (data, model, tmp_path), exception type, parameter named in the message).
BAD_INPUTS = {
    "negative sigma": (lambda d, m, p: GaussianBlur(-1.0), ValueError, "sigma"),
    "nan sigma": (lambda d, m, p: GaussianBlur(float("nan")), ValueError, "sigma"),
    "string sigma": (lambda d, m, p: GaussianBlur("1.5"), TypeError, "sigma"),
    "even median window": (lambda d, m, p: MedianFilter(4), ValueError, "size"),
    "zero median window": (lambda d, m, p: MedianFilter(0), ValueError, "size"),
    "unknown defence": (lambda d, m, p: Defence.parse("bilateral:2"), ValueError, "defence"),
    "unknown dataset": (lambda d, m, p: load_dataset("imagenet"), ValueError, "name"),
    "shapes too small": (lambda d, m, p: load_dataset("shapes", image_size=20), ValueError, "image_size"),
    "unknown arch": (lambda d, m, p: build_model("vit", input_shape=(32, 32, 3), num_classes=3), ValueError, "arch"),
    "inception below 75 px": (lambda d, m, p: build_model("inception_v3", input_shape=(64, 64, 3), num_classes=3), ValueError, "input_shape"),
    "vgg16 below 32 px": (lambda d, m, p: build_model("vgg16", input_shape=(28, 28, 3), num_classes=3), ValueError, "input_shape"),
    "zero epochs": (lambda d, m, p: train_model("small_cnn", d, epochs=0, cache_dir=p), ValueError, "epochs"),
    "float epochs": (lambda d, m, p: train_model("small_cnn", d, epochs=2.0, cache_dir=p), TypeError, "epochs"),
    "negative batch size": (lambda d, m, p: train_model("small_cnn", d, epochs=1, batch_size=-1, cache_dir=p), ValueError, "batch_size"),
    "zero step": (lambda d, m, p: targeted_attack(m, _images(), [1, 2, 3], step=0.0), ValueError, "step"),
    "infinite step": (lambda d, m, p: targeted_attack(m, _images(), [1, 2, 3], step=float("inf")), ValueError, "step"),
    "negative max_steps": (lambda d, m, p: targeted_attack(m, _images(), [1, 2, 3], max_steps=-5), ValueError, "max_steps"),
    "images of rank 3": (lambda d, m, p: targeted_attack(m, _images()[..., 0], [1, 2, 3]), ValueError, "images"),
    "images with NaN": (lambda d, m, p: targeted_attack(m, np.where(_images() > 0, np.nan, 0), [1, 2, 3]), ValueError, "images"),
    "images above 1": (lambda d, m, p: targeted_attack(m, _images() * 3, [1, 2, 3]), ValueError, "images"),
    "empty batch": (lambda d, m, p: targeted_attack(m, _images(0), []), ValueError, "images"),
    "targets too short": (lambda d, m, p: targeted_attack(m, _images(), [1, 2]), ValueError, "targets"),
    "non-integer targets": (lambda d, m, p: targeted_attack(m, _images(), [1.5, 2, 3]), TypeError, "targets"),
    "target out of range": (lambda d, m, p: targeted_attack(m, _images(), [1, 2, 10]), ValueError, "targets"),
    "wrong image size for model": (lambda d, m, p: targeted_attack(m, _images(size=9), [1, 2, 3]), ValueError, "images"),
    "labels of wrong length": (lambda d, m, p: clean_accuracy(m, _images(), [1, 2]), ValueError, "labels"),
    "zero images to attack": (lambda d, m, p: attack_evaluation(m, d.x_test, d.y_test, n_images=0), ValueError, "n_images"),
    "apply_defence on rank-2": (lambda d, m, p: Defence.parse("gaussian:1").apply(np.zeros((8, 8))), ValueError, "images"),
    "unknown profile": (lambda d, m, p: profile_parameters("fast"), ValueError, "profile"),
    "paper profile without data": (lambda d, m, p: profile_parameters("paper"), ValueError, "data_dir"),
    "notebook sigmas negative": (lambda d, m, p: check_parameters({"sigmas": [0.0, -1.0]}), ValueError, "sigmas"),
    "notebook windows even": (lambda d, m, p: check_parameters({"windows": [3, 4]}), ValueError, "windows"),
    "notebook epochs string": (lambda d, m, p: check_parameters({"epochs": "5"}), TypeError, "epochs"),
    "notebook arch size too small": (
        lambda d, m, p: check_parameters({"arch_list": ["inception_v3"], "arch_image_sizes": {"inception_v3": 32}}), ValueError, "arch_image_sizes"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_fast_with_a_clear_message(case, tiny, tmp_path):
    call, error, param = BAD_INPUTS[case]
    data, model = tiny
    start = time.perf_counter()
    with pytest.raises(error) as info:
        call(data, model, tmp_path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert param in message, message
    assert "\n" not in message
    assert elapsed < 5.0, f"{case} took {elapsed:.1f} s to fail"
    assert not any(tmp_path.iterdir()), "a failed call wrote files"


def test_single_image_and_already_at_target(tiny):
    data, model = tiny
    label = np.array([int(np.asarray(model(data.x_test[:1])).argmax())])
    result = targeted_attack(model, data.x_test[:1], label, progress=False)
    assert result.success.tolist() == [True] and result.steps.tolist() == [0]


_TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached
    data = load_dataset("mnist", n_images=3000)
    print("training", flush=True)
    fit_cached("small_cnn", data, epochs=50, cache_dir=sys.argv[1], verbose=0)
    """
)


@pytest.mark.slow
def test_kill_during_training_leaves_nothing_trusted(tmp_path):
    cache = tmp_path / "models"
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(cache)], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "training"
    time.sleep(4)  # well inside the 50 epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in cache.glob("*") if not p.name.startswith(".")] if cache.exists() else []
    assert leftovers == []
    data = load_dataset("digits", n_images=200)
    fit = fit_cached("small_cnn", data, epochs=1, cache_dir=cache, verbose=0)
    assert not fit.from_cache


def test_stale_temporary_file_is_never_loaded(tmp_path):
    data = load_dataset("digits", n_images=200)
    first = fit_cached("small_cnn", data, epochs=1, cache_dir=tmp_path, verbose=0)
    meta = first.path.with_suffix(".json")
    meta.unlink()  # as if the run died between writing the model and its record
    assert not fit_cached("small_cnn", data, epochs=1, cache_dir=tmp_path, verbose=0).from_cache


def _pipeline(cache: Path, out: Path) -> bytes:
    data = load_dataset("digits", n_images=400)
    model = train_model("small_cnn", data, defence="median:3", epochs=2, cache_dir=cache, verbose=0)
    summary = attack_evaluation(model, data.x_test, data.y_test, n_images=20, max_steps=200, progress=False)
    write_csv([{"accuracy": clean_accuracy(model, data.x_test, data.y_test), **summary.row()}], out)
    return out.read_bytes() + summary.result.adversarial.tobytes()


@pytest.mark.slow
def test_two_runs_give_identical_bytes(tmp_path):
    first = _pipeline(tmp_path / "a", tmp_path / "a.csv")
    second = _pipeline(tmp_path / "b", tmp_path / "b.csv")
    assert first == second


def test_model_files_are_loaded_in_safe_mode():
    source = (ROOT / "src" / "helpers" / "training" / "train.py").read_text()
    assert "safe_mode=True" in source
    for path in (ROOT / "src" / "helpers").rglob("*.py"):
        text = path.read_text()
        assert "allow_pickle=True" not in text and "eval(" not in text, path.name


_SAME_MODEL_SCRIPT = textwrap.dedent(
    """
    import sys
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached

    fit = fit_cached("small_cnn", load_dataset("digits", n_images=300), epochs=2, cache_dir=sys.argv[1], verbose=0)
    print("cached" if fit.from_cache else "trained")
    """
)


@pytest.mark.slow
def test_two_processes_needing_one_model_train_it_once(tmp_path):
    """Two notebooks at once (the book runner's --jobs 2): one trains, the other waits on the lock and loads."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", _SAME_MODEL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True)
             for _ in range(2)]
    said = sorted(proc.communicate(timeout=300)[0].split()[-1] for proc in procs)
    assert said == ["cached", "trained"]
    assert len(list(tmp_path.glob("*.keras"))) == 1
