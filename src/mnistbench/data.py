"""MNIST-like data on disk: fetch the four IDX files of a dataset, check them, decode them, split them.

Each file is checked by the SHA-256 of its decompressed IDX bytes (datasets.py), so the same data in
another compression is accepted and a changed one is refused.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from mnistbench.datasets import FILES, Dataset
from mnistbench.errors import MnistbenchError
from mnistbench.files import atomic_dir, load_tensors

IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10
IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only type these datasets use


class DataError(MnistbenchError):
    """A missing, corrupt or malformed data file."""


# --- fetching ----------------------------------------------------------------------------


def payload_sha256(path: Path) -> str:
    """SHA-256 of a .gz file's decompressed bytes."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: corrupt or truncated gzip data ({err})") from None
    return digest.hexdigest()


def _download(dataset: Dataset, name: str, dest: Path) -> None:
    errors = []
    for mirror in dataset.mirrors:
        try:
            with urllib.request.urlopen(mirror + name, timeout=60) as response, open(dest, "wb") as out:
                shutil.copyfileobj(response, out)
            return
        except OSError as err:  # URLError and timeouts are OSErrors
            errors.append(f"{mirror}{name}: {err}")
    raise DataError(f"could not download {dataset.title} (no internet?); {dataset.install_hint}.\n  "
                    + "\n  ".join(errors))


def fetch_raw(out_dir: str | Path, dataset: Dataset, source: Path | None, origin: str = "data.local_dir") -> dict:
    """Copy the four files of `dataset` from the folder `source` (named by `origin`), or download them when it is
    None, into out_dir, and verify their contents; all or nothing."""
    if source is not None and not source.is_dir():
        raise DataError(f"{source}: {dataset.title} folder not found (from {origin}); expected a folder with the four "
                        f"IDX .gz files: {dataset.install_hint}, or data.local_dir: null to download")
    with atomic_dir(out_dir) as tmp:
        for name in FILES:
            dest = tmp / name
            if source is None:
                _download(dataset, name, dest)
                origin_file = dest
            else:
                origin_file = source / name
                if not origin_file.is_file():
                    raise DataError(f"{origin_file}: file not found; expected the standard {dataset.title} file {name}")
                shutil.copyfile(origin_file, dest)
            expected, found = dataset.payload_sha256[name], payload_sha256(dest)
            if found != expected:
                raise DataError(f"{origin_file}: checksum mismatch: expected {dataset.title} data with SHA-256 "
                                f"{expected} (decompressed), found {found}")
    return {"dataset": dataset.name, "source": str(source) if source else "download"}


# --- decoding ----------------------------------------------------------------------------


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Decode one gzipped IDX file of unsigned bytes with `ndim` dimensions."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None
    if len(blob) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(blob)} bytes)")
    zero, kind, found_ndim = int.from_bytes(blob[0:2], "big"), blob[2], blob[3]
    if zero != 0 or kind != IDX_UBYTE or found_ndim != ndim:
        raise DataError(
            f"{path}: wrong IDX magic number: expected 0x{0x0800 + ndim:08x} (unsigned bytes, {ndim}-D), "
            f"found 0x{int.from_bytes(blob[0:4], 'big'):08x}"
        )
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(blob) - header != expected:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data), found {len(blob) - header} bytes"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def read_images_and_labels(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) == 0:
        raise DataError(f"{images_path}: holds 0 images; expected a non-empty IDX image file")
    if images.shape[1:] != IMAGE_SIZE:
        raise DataError(f"{images_path}: wrong image dimensions: expected 28x28, found {images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; expected equal counts"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(labels.max())
        raise DataError(f"{labels_path}: label {bad} outside 0-9 at index {int(np.argmax(labels == bad))}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# --- splitting ---------------------------------------------------------------------------


def split_indices(n: int, train_size: int, valid_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random partition of range(n) into train and valid, disjoint and complete."""
    if train_size + valid_size != n:
        raise DataError(f"split sizes {train_size} + {valid_size} do not add up to the {n} training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:train_size].sort().values, order[train_size:].sort().values


def class_histogram(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels, minlength=NUM_CLASSES).tolist()


def digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes: the identity of a split in reports/split.json and in MLflow."""
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def make_splits(raw_dir: str | Path, out_dir: str | Path, train_size: int, valid_size: int, seed: int) -> dict:
    """Decode the raw files and write train/valid/test tensors; return a summary of each split."""
    raw_dir = Path(raw_dir)
    train_x, train_y = read_images_and_labels(
        raw_dir / "train-images-idx3-ubyte.gz", raw_dir / "train-labels-idx1-ubyte.gz"
    )
    test_x, test_y = read_images_and_labels(raw_dir / "t10k-images-idx3-ubyte.gz", raw_dir / "t10k-labels-idx1-ubyte.gz")
    train_idx, valid_idx = split_indices(len(train_x), train_size, valid_size, seed)
    splits = {
        "train": (train_x[train_idx], train_y[train_idx]),
        "valid": (train_x[valid_idx], train_y[valid_idx]),
        "test": (test_x, test_y),
    }
    sources = {"train": raw_dir / "train-labels-idx1-ubyte.gz", "test": raw_dir / "t10k-labels-idx1-ubyte.gz"}
    for name, (_, y) in splits.items():
        missing = [c for c, count in enumerate(class_histogram(y)) if count == 0]
        if missing:
            raise DataError(f"{sources.get(name, sources['train'])}: the {name} split has no examples of class "
                            f"{', '.join(map(str, missing))}; expected every digit 0-9 in every split")
    summary = {"seed": seed, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for name, (x, y) in splits.items():
            torch.save({"images": x, "labels": y}, tmp / f"{name}.pt")
            summary["splits"][name] = {
                "count": len(y),
                "class_counts": class_histogram(y),
                "sha256_images": digest(x),
                "sha256_labels": digest(y),
            }
    return summary


def load_split(processed_dir: str | Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 images N x 28 x 28, int64 labels N)."""
    path = Path(processed_dir) / f"{name}.pt"
    if not path.is_file():
        raise DataError(f"{path}: file not found; run the split stage first (dvc repro split)")
    blob = load_tensors(path, "split file")
    images, labels = (blob.get("images"), blob.get("labels")) if isinstance(blob, dict) else (None, None)
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and images.dtype == torch.uint8
            and images.shape[1:] == IMAGE_SIZE and labels.dtype == torch.int64 and labels.shape == images.shape[:1]
            and len(labels) > 0):
        found = (f"images {tuple(images.shape)} {images.dtype}, labels {tuple(labels.shape)} {labels.dtype}"
                 if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) else "no such tensors")
        raise DataError(f"{path}: not a split file written by the split stage (expected uint8 images N x 28 x 28 and "
                        f"N int64 labels, N > 0; found {found}); rerun the split stage (dvc repro split)")
    return images, labels


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1] with a channel axis, as torchvision's ToTensor gives them."""
    return images.unsqueeze(1).float().div_(255.0)
