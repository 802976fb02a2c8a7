import gzip
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files: $MNIST_DIR, else ../shared/mnist beside the project."""
    path = Path(os.environ.get("MNIST_DIR") or ROOT.parent / "shared" / "mnist").resolve()
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {path}; set MNIST_DIR to the folder with the four .gz files")
    return path


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, count: int | None = None) -> Path:
    """Write `array` as a gzipped IDX file of unsigned bytes; `magic`/`count` can be falsified for tests."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return path
