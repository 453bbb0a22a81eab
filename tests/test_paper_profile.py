"""The paper profile before a GPU sees it: every file it needs is checked before training, and the whole book
runs end to end on a tiny ImageNet-style folder with stand-in ImageNet weight files."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.book.preflight import preflight
from helpers.book.profiles import NOTEBOOKS, profile_parameters

ROOT = Path(__file__).resolve().parent.parent
# Sizes that let the paper profile's every chapter run in a few minutes on 2 CPU cores: the 299 px images are
# resized to InceptionV3's smallest input (75 px) for the attack chapter's pretrained InceptionV3; one epoch, a
# few images and steps. The defence study (chapters 1-6, four models) uses the small CNN at 32 px; set
# PAPER_STUDY_ARCH=inception_v3 to run it with the paper profile's own InceptionV3 (at 75 px, about 12 min on 2 cores).
STUDY_ARCH = os.environ.get("PAPER_STUDY_ARCH", "small_cnn")
SMALL = {
    "study_arch": STUDY_ARCH, "study_image_size": 75 if STUDY_ARCH != "small_cnn" else 32, "epochs": 1, "sigmas": [0, 1.5], "windows": [3], "n_attack": 2, "max_steps": 3,
    "arch_list": ["inception_v3"], "arch_image_sizes": {"inception_v3": 75}, "arch_epochs": 1, "arch_batch_size": 16,
    "arch_n_attack": 2, "arch_max_steps": 3, "budgets": [0, 1], "pgd_steps": 2, "n_adaptive": 4, "n_bootstrap": 10,
    "strong_images": 3, "strong_budgets": [1], "strong_steps": 2, "strong_restarts": 1, "square_queries": 3,
    "smoothing_sigmas": [0.5], "smoothing_n0": 4, "smoothing_n": 8, "eot_samples": 1, "adversarial_epsilon": 1.0,
    "bench_images": 2, "bench_seed_images": 1, "bench_repeats": 1, "bench_batch_sizes": [2], "bench_inception_size": 75,
    "bench_inception_batch": 2, "bench_inception_paper_batch": 0, "bench_train_batches": 1, "bench_compare_backends": False,
}


def image_folder(root: Path, *, classes: int = 3, per_class: int = 6, size: int = 299, broken: bool = True) -> Path:
    """An ImageNet-style folder: ``classes`` sub-folders of ``size`` px JPEG and PNG images (each class its own
    colour, plus noise), and one unreadable file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * c, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"img_{i}.{'jpg' if i % 2 else 'png'}")
    if broken:
        (root / "class_0" / "broken.jpg").write_bytes(b"not an image")
    return root


def stand_in_weights(keras_home: Path, archs) -> None:
    """Random no-top weights of each architecture at Keras' ImageNet file name, in the legacy HDF5 layout that
    Keras' ``load_weights`` reads for a name ending in ``.h5`` (as the real downloaded files are)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from helpers.training.models import IMAGENET_FILES, _application

    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    for arch in archs:
        backbone = _application(arch)(include_top=False, weights=None, input_shape=(75, 75, 3), pooling="avg")
        with h5py.File(keras_home / "models" / IMAGENET_FILES[arch], "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
        keras.backend.clear_session()


def paper(folder: Path, **overrides) -> dict:
    return profile_parameters("paper", data_dir=str(folder)) | overrides


def test_preflight_names_the_missing_weight_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    folder = image_folder(tmp_path / "images", size=32)
    with pytest.raises(FileNotFoundError, match=r"arch_weights: .*inception_v3_weights_tf_dim_ordering_tf_kernels_notop\.h5 at .*keras/models"):
        preflight(paper(folder))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    for name in ("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        (tmp_path / "keras" / "models" / name).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="arch_weights: .* not an HDF5 weights file"):
        preflight(paper(folder))
    stand_in_weights(tmp_path / "keras", ["resnet50"])  # a real weights file, of the wrong architecture
    wrong = tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(ValueError, match=r"arch_weights: .*resnet50_weights.* does not fit vgg16 without its top"):
        preflight(paper(folder, arch_weights=str(wrong), arch_list=["vgg16"], arch_image_sizes={"vgg16": 32}))
    assert preflight(paper(folder, arch_weights=str(wrong), arch_list=["resnet50"], arch_image_sizes={"resnet50": 32}),
                     scan_images=False) == [f"arch_weights: {wrong} loaded into resnet50"]
    with pytest.raises(FileNotFoundError, match="arch_weights: no file at"):
        preflight(paper(folder, arch_weights=str(tmp_path / "nowhere.h5"), arch_list=["vgg16"]))
    with pytest.raises(ValueError, match="arch_weights: one weights file cannot fit 3 architectures"):
        preflight(paper(folder, arch_weights=str(tmp_path / "nowhere.h5")))
    with pytest.raises(ValueError, match="arch_weights: small_cnn has no pretrained weights"):
        preflight(paper(folder, arch_list=["small_cnn"], arch_image_sizes={"small_cnn": 32}))


def test_preflight_checks_the_image_folder(tmp_path):
    params = paper(tmp_path / "missing", arch_weights=None)
    with pytest.raises(FileNotFoundError, match="study_dataset: no folder at .*missing.*one sub-folder of images per class"):
        preflight(params)
    one_class = image_folder(tmp_path / "one", classes=1, size=16)
    with pytest.raises(ValueError, match="study_dataset: .* has 1 class folder"):
        preflight(paper(one_class, arch_weights=None))
    few = image_folder(tmp_path / "few", classes=2, per_class=2, size=16)
    (few / "class_1" / "img_0.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="study_dataset: class folder .*class_1.* has 1 readable image"):
        preflight(paper(few, arch_weights=None))
    good = image_folder(tmp_path / "good", size=16)
    notes = preflight(paper(good, arch_weights=None))
    assert any("3 classes, 18 readable images" in n for n in notes) and any("1 unreadable" in n for n in notes)
    assert preflight(paper(good, arch_weights=None), scan_images=False) == []  # the notebooks' cheap check
    with pytest.raises(ValueError, match="study_image_size: inception_v3 needs images of at least 75 px"):
        preflight(paper(good, arch_weights=None, study_image_size=None))


def test_each_chapter_first_cell_checks_folders_and_weight_files_cheaply(tmp_path, monkeypatch):
    from helpers.book.notebook import check_parameters

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    folder = image_folder(tmp_path / "images", size=16)
    chapter = {"profile": "paper", "arch_dataset": f"folder:{folder}", "arch_list": ["vgg16"], "arch_weights": "imagenet",
               "arch_image_sizes": {"vgg16": 224}, "In": [], "_": None}  # a notebook's globals hold more than parameters
    with pytest.raises(FileNotFoundError, match="arch_weights: ImageNet weights for vgg16 are missing"):
        check_parameters(chapter)
    with pytest.raises(FileNotFoundError, match="arch_dataset: no folder at"):
        check_parameters(chapter | {"arch_dataset": f"folder:{tmp_path / 'nowhere'}"})
    check_parameters(chapter | {"arch_weights": None})


@pytest.mark.slow
def test_run_book_stops_before_any_notebook_when_a_weight_file_is_missing(tmp_path):
    folder = image_folder(tmp_path / "images", size=16)
    env = os.environ | {"KERAS_HOME": str(tmp_path / "keras")}
    run = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "paper", "--data", str(folder), "--no-build",
                          "--output-root", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "error: arch_weights: ImageNet weights for inception_v3 are missing" in run.stderr
    assert not (tmp_path / "out" / "book" / "executed" / "01_attack.ipynb").exists()


@pytest.mark.notebooks
@pytest.mark.paper
def test_paper_profile_runs_every_chapter_on_a_tiny_folder(tmp_path):
    folder = image_folder(tmp_path / "images")
    stand_in_weights(tmp_path / "keras", SMALL["arch_list"])
    out = tmp_path / "out"
    command = [sys.executable, "scripts/run_book.py", "--profile", "paper", "--data", str(folder), "--no-build",
               "--output-root", str(out), "--jobs", "2"]
    for name, value in SMALL.items():
        command += ["-p", name, json.dumps(value)]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, env=os.environ | {"KERAS_HOME": str(tmp_path / "keras")}, capture_output=True, text=True)
    print(f"paper profile, every chapter: {time.perf_counter() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 unreadable or non-image file(s)" in run.stdout
    for name in NOTEBOOKS:
        assert (out / "book" / "executed" / f"{name}.ipynb").exists()
    assert (out / "data" / "results" / "verdicts.csv").exists()
    # At these sizes attacks may reach no target: the example figures then say so instead of failing on an empty batch.
    with open(out / "data" / "results" / "attack.csv", newline="") as f:
        failed = [row["model"] for row in csv.DictReader(f) if float(row["success_rate"]) == 0]
    cells = json.loads((out / "book" / "executed" / "01_attack.ipynb").read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert printed.count("so there is no example to show") == len(failed)
    # The repository's own executed copies are not this run's (the quick book may be rebuilt beside this test).
    assert not any(str(folder) in p.read_text() for p in (ROOT / "book" / "executed").glob("*.ipynb"))
