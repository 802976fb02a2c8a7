"""The datasets the harness runs on, by name (params.yaml's `data.dataset`).

Each is four IDX files under the standard names, 60,000 training and 10,000 test images of 28x28 in ten
classes. A file is checked by the SHA-256 of its decompressed IDX bytes, not of the .gz: the same data in
another compression (Debian's package re-compresses Fashion-MNIST) is accepted, a changed one is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import PositiveInt, field_validator, model_validator

from mnistbench.params_file import check_known
from mnistbench.schema import Section, Seed
from mnistbench.settings import project_root

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    classes: tuple[str, ...]
    payload_sha256: dict[str, str]  # file name -> SHA-256 of its decompressed IDX bytes
    local_dir: str  # where a local copy is, by default (`data.local_dir: default`)
    install_hint: str  # what to do when that folder is missing
    mirrors: tuple[str, ...]  # download sources, for `data.local_dir: null`
    writeup: bool = False  # the write-up's claims, and the accuracy goals of gates.yaml, are about this dataset
    published: list[dict] = field(default_factory=list)  # published results, for context in the report


DATASETS = {
    "mnist": Dataset(
        name="mnist",
        title="MNIST",
        classes=tuple(str(d) for d in range(10)),
        payload_sha256={
            "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        local_dir="../shared/mnist",
        install_hint="set data.local_dir (or MNIST_DIR) to a folder holding the four MNIST .gz files",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        writeup=True,
        # Each trained on all 60,000 training images (ours see 48,000); one picks its best epoch on the test set.
        published=[
            {"family": "MLP", "what": "Keras example: 784-512-512-10, dropout 0.2, RMSprop, 20 epochs",
             "parameters": "669,706", "test accuracy (%)": "98.40",
             "source": "https://github.com/keras-team/keras/blob/keras-2/examples/mnist_mlp.py"},
            {"family": "CNN", "what": "3 conv blocks (8-16-32, BatchNorm, max-pool), FC 288-32-10, rotation/shift "
             "augmentation, OneCycle, 19 epochs; best epoch on the test set",
             "parameters": "15,578", "test accuracy (%)": "99.43",
             "source": "https://github.com/shishir13/Personal_Projects/tree/main/MNIST_99.4"},
            {"family": "ViT", "what": "mnistvit: a ViT trained from scratch for 64 epochs with rotation, shift and "
             "scale augmentation", "parameters": "4.2M", "test accuracy (%)": "99.65",
             "source": "https://github.com/asnelt/mnistvit (model card: https://huggingface.co/asnelt/mnistvit)"},
        ],
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        title="Fashion-MNIST",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        payload_sha256={
            "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        local_dir="/usr/share/datasets/fashion-mnist",
        install_hint="install Debian's package (apt-get install dataset-fashion-mnist; `make setup` does it), "
                     "or set data.local_dir to a folder holding the four Fashion-MNIST .gz files",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # The dataset's own benchmark table (sklearn classifiers and user-submitted small networks), trained
        # on all 60,000 training images.
        published=[
            {"family": "MLP", "what": "sklearn MLPClassifier, ReLU, 100 or 100-10 hidden units",
             "parameters": "-", "test accuracy (%)": "about 87-88",
             "source": "https://github.com/zalandoresearch/fashion-mnist#benchmark"},
            {"family": "CNN", "what": "small CNNs of 2-3 conv layers (with pooling, BatchNorm or dropout)",
             "parameters": "100k-3M", "test accuracy (%)": "about 91-93",
             "source": "https://github.com/zalandoresearch/fashion-mnist#benchmark"},
        ],
    ),
}


MNIST_TRAIN_IMAGES = 60_000


class DataParams(Section):
    dataset: str  # a name in datasets.DATASETS
    # A folder holding the four .gz files; `default`: the dataset's own (for MNIST, $MNIST_DIR overrides
    # it: stages/download.py); None: download from the dataset's mirrors.
    local_dir: str | None

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return check_known([name], DATASETS, "dataset")[0]

    def source(self) -> Dataset:
        return DATASETS[self.dataset]


def resolve_source(chosen: str, folder: Path) -> Path:
    """data.local_dir (or $MNIST_DIR) as a path: `~` expanded, a relative one taken from the project of `folder`."""
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else project_root(folder) / path


class SplitParams(Section):
    seed: Seed
    train_size: PositiveInt
    valid_size: PositiveInt

    @model_validator(mode="after")
    def _sizes_cover_mnist(self) -> SplitParams:
        if self.train_size + self.valid_size != MNIST_TRAIN_IMAGES:
            raise ValueError(
                f"split.train_size + split.valid_size must be {MNIST_TRAIN_IMAGES} (the MNIST training set), "
                f"found {self.train_size} + {self.valid_size} = {self.train_size + self.valid_size}"
            )
        return self
