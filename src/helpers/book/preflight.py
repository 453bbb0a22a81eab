"""Everything a run needs, checked before any training: the parameters, the image folders and the weight files.

``scripts/run_book.py`` calls :func:`preflight` on the whole parameter set before the first notebook runs, so a
missing file fails in a second with one line naming the parameter, the file and where it belongs, not after an
hour of training. Each chapter's first cell repeats the cheap part (:func:`helpers.book.notebook.check_parameters`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from helpers.book.profiles import check_declared

# Side of the images each data set gives when no image size is asked for, and its channels.
NATIVE_SIZE = {"mnist": 28, "digits": 8, "shapes": 64, "folder": 64}
CHANNELS = {"mnist": 1, "digits": 1, "shapes": 3, "folder": 3}
_FOLDER_HINT = "one sub-folder of images per class; give it with --data PATH (make book PROFILE=paper DATA=PATH)"


def preflight(params: Mapping[str, Any], *, scan_images: bool = True, load_weights: bool = True) -> list[str]:
    """Check every parameter in ``params`` and every file they name; returns notes (e.g. skipped files).

    Raises a one-line ``TypeError``, ``ValueError`` or ``FileNotFoundError`` naming the parameter. With
    ``scan_images`` each image of a ``folder:PATH`` data set is opened (header only) and every class needs two
    readable images; without it only the folder and its class folders are checked. With ``load_weights`` each
    architecture's backbone is built once with its pretrained weights file, so a file that does not fit fails here.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of parameter names to values, got {type(params).__name__}")
    check_declared(params)
    notes: list[str] = []
    folders: dict[str, str] = {}  # each folder once, under the first parameter that names it
    for name in ("study_dataset", "arch_dataset"):
        if isinstance(params.get(name), str) and params[name].startswith("folder:"):
            folders.setdefault(params[name].removeprefix("folder:"), name)
    for folder, name in folders.items():
        notes += check_folder(name, folder, scan_images=scan_images)
    if "study_arch" in params and "study_dataset" in params:
        check_study_size(params)
    if params.get("arch_weights") is not None:
        check_weights(params)
        if load_weights:
            notes += try_weights(params)
    return notes


def check_folder(name: str, folder: str, *, scan_images: bool = True) -> list[str]:
    """An ImageNet-style folder: it exists, has at least two class folders and (``scan_images``) at least two
    readable images in each."""
    from helpers.training.data import readable_images

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: no folder at {str(root)!r}; expected {_FOLDER_HINT}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{name}: {str(root)!r} has {len(classes)} class folder(s); expected at least 2, {_FOLDER_HINT}")
    if not scan_images:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, labels, classes_found, skipped = readable_images(root)
    counts = {cls: labels.count(index) for index, cls in enumerate(classes_found)}
    short = [cls for cls, count in counts.items() if count < 2]
    if short:
        raise ValueError(f"{name}: class folder {str(root / short[0])!r} has {counts[short[0]]} readable image(s); "
                         f"every class needs at least 2 (JPEG, PNG, BMP or GIF)")
    total = sum(counts.values())
    notes = [f"{name}: {len(counts)} classes, {total} readable images in {str(root)!r}"]
    if skipped:
        notes.append(f"{name}: {skipped} unreadable or non-image file(s) in {str(root)!r} will be skipped")
    return notes


def check_study_size(params: Mapping[str, Any]) -> None:
    """The study's images are large enough for the study's architecture."""
    from helpers.training.models import MIN_IMAGE_SIZE

    arch, dataset = params["study_arch"], params["study_dataset"]
    size = params.get("study_image_size") or NATIVE_SIZE[dataset.partition(":")[0]]
    if size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"study_image_size: {arch} needs images of at least {MIN_IMAGE_SIZE[arch]} px; "
                         f"{dataset} gives {size} px (set study_image_size)")
    if dataset == "shapes" and size < 32:
        raise ValueError(f"study_image_size: shapes need at least 32 px, got {size}")


def check_weights(params: Mapping[str, Any]) -> None:
    """``arch_weights`` (``"imagenet"`` or a file) fits every architecture of ``arch_list`` and is on disk."""
    from helpers.training.models import IMAGENET_FILES, keras_weights_path

    weights, archs = params["arch_weights"], list(params.get("arch_list", []))
    dataset = params.get("arch_dataset")
    if isinstance(dataset, str) and CHANNELS.get(dataset.partition(":")[0], 3) != 3:
        raise ValueError(f"arch_weights: pretrained weights need RGB images, but arch_dataset {dataset!r} is greyscale")
    if "small_cnn" in archs:
        raise ValueError("arch_weights: small_cnn has no pretrained weights; drop it from arch_list or set arch_weights to null")
    if weights != "imagenet":
        if len(archs) > 1:
            raise ValueError(f"arch_weights: one weights file cannot fit {len(archs)} architectures ({', '.join(archs)}); "
                             f"give one architecture in arch_list or use \"imagenet\"")
        _check_weights_file(Path(weights), what=f"the weights file {str(weights)!r}")
        return
    for arch in archs:
        path = keras_weights_path(arch)
        if not path.is_file():
            raise FileNotFoundError(f"arch_weights: ImageNet weights for {arch} are missing; put Keras' {IMAGENET_FILES[arch]} "
                                    f"at {path} (the folder is $KERAS_HOME/models, default ~/.keras/models)")
        _check_weights_file(path, what=f"{IMAGENET_FILES[arch]} at {path}")


def try_weights(params: Mapping[str, Any]) -> list[str]:
    """Build each architecture of ``arch_list`` at its size with ``arch_weights`` loaded (a few seconds each)."""
    import keras

    from helpers.training.models import build_model

    sizes = params.get("arch_image_sizes", {})
    for arch in params.get("arch_list", []):
        size = sizes.get(arch, 299)
        try:
            build_model(arch, input_shape=(size, size, 3), num_classes=2, weights=params["arch_weights"])
        except (ValueError, OSError) as error:
            raise ValueError(f"arch_weights: {str(error).removeprefix('weights: ')}") from None
        finally:
            keras.backend.clear_session()
    return [f"arch_weights: {params['arch_weights']} loaded into {', '.join(params.get('arch_list', []))}"]


def _check_weights_file(path: Path, *, what: str) -> None:
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"arch_weights: no file at {str(path)!r}; give the path of a Keras weights file "
                                f"of the backbone without its top")
    if path.suffix in (".h5", ".hdf5") and not h5py.is_hdf5(path):
        raise ValueError(f"arch_weights: {what} is not an HDF5 weights file (truncated download?)")
