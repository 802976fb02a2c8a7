import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_stage, write_idx
from mnistbench import data
from mnistbench.data import DataError
from mnistbench.datasets import DATASETS, FILES


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


def test_read_idx_round_trip(tmp_path, images):
    path = write_idx(tmp_path / "x.gz", images)
    assert np.array_equal(data.read_idx(path, ndim=3), images)


def test_truncated_gzip_is_named(tmp_path, images):
    path = write_idx(tmp_path / "x.gz", images)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"x\.gz: corrupt or truncated"):
        data.read_idx(path, ndim=3)


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.read_idx(path, ndim=3)


def test_wrong_magic(tmp_path, images):
    path = write_idx(tmp_path / "x.gz", images, magic=0x0D03)  # 0x0D is float, not unsigned byte
    with pytest.raises(DataError, match="wrong IDX magic number: expected 0x00000803.*found 0x00000d03"):
        data.read_idx(path, ndim=3)


def test_labels_file_where_images_expected(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.arange(5))
    with pytest.raises(DataError, match="expected 0x00000803"):
        data.read_idx(path, ndim=3)


def test_header_count_disagrees_with_data(tmp_path, images):
    path = write_idx(tmp_path / "x.gz", images, count=6)
    with pytest.raises(DataError, match=r"header says shape \(6, 28, 28\)"):
        data.read_idx(path, ndim=3)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: file not found"):
        data.read_idx(tmp_path / "nope.gz", ndim=1)


def test_image_and_label_counts_must_match(tmp_path, images):
    x = write_idx(tmp_path / "x.gz", images)
    y = write_idx(tmp_path / "y.gz", np.arange(4))
    with pytest.raises(DataError, match="holds 5 images but .*y.gz holds 4 labels"):
        data.read_images_and_labels(x, y)


def test_wrong_image_dimensions(tmp_path):
    x = write_idx(tmp_path / "x.gz", np.zeros((3, 28, 27)))
    y = write_idx(tmp_path / "y.gz", np.arange(3))
    with pytest.raises(DataError, match="wrong image dimensions: expected 28x28, found 28x27"):
        data.read_images_and_labels(x, y)


def test_labels_outside_0_to_9(tmp_path, images):
    x = write_idx(tmp_path / "x.gz", images)
    y = write_idx(tmp_path / "y.gz", [1, 2, 12, 3, 4])
    with pytest.raises(DataError, match="label 12 outside 0-9 at index 2"):
        data.read_images_and_labels(x, y)


def test_split_is_deterministic_disjoint_and_complete():
    a_train, a_valid = data.split_indices(1000, 800, 200, seed=7)
    b_train, b_valid = data.split_indices(1000, 800, 200, seed=7)
    c_train, _ = data.split_indices(1000, 800, 200, seed=8)
    assert torch.equal(a_train, b_train) and torch.equal(a_valid, b_valid)
    assert not torch.equal(a_train, c_train)
    assert len(a_train) == 800 and len(a_valid) == 200
    assert set(a_train.tolist()).isdisjoint(a_valid.tolist())
    assert sorted(a_train.tolist() + a_valid.tolist()) == list(range(1000))


MNIST = DATASETS["mnist"]


def test_fetch_checks_the_decompressed_data_and_leaves_nothing_behind(tmp_path, mnist_dir):
    local = tmp_path / "local"
    shutil.copytree(mnist_dir, local)
    labels = local / "t10k-labels-idx1-ubyte.gz"
    labels.chmod(0o644)
    payload = bytearray(gzip.decompress(labels.read_bytes()))
    payload[100] = (payload[100] + 1) % 10  # one label changed, still a valid IDX file
    labels.write_bytes(gzip.compress(bytes(payload)))
    out = tmp_path / "raw"
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: checksum mismatch: expected MNIST data with "
                                        r"SHA-256 ff7bcfd4\w+ \(decompressed\), found"):
        data.fetch_raw(out, MNIST, local)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["local"]  # no temporary folder left either


def test_the_same_data_in_another_compression_is_accepted(tmp_path, mnist_dir):
    local = tmp_path / "local"
    local.mkdir()
    for name in FILES:  # as Debian's packages do: the same IDX bytes, compressed again
        (local / name).write_bytes(gzip.compress(gzip.decompress((mnist_dir / name).read_bytes()), compresslevel=1))
        assert (local / name).read_bytes() != (mnist_dir / name).read_bytes()
    data.fetch_raw(tmp_path / "raw", MNIST, local)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILES)


def test_a_truncated_gz_is_named(tmp_path, mnist_dir):
    local = tmp_path / "local"
    shutil.copytree(mnist_dir, local)
    (local / "train-images-idx3-ubyte.gz").chmod(0o644)
    (local / "train-images-idx3-ubyte.gz").write_bytes((mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: corrupt or truncated gzip data"):
        data.fetch_raw(tmp_path / "raw", MNIST, local)
    assert not (tmp_path / "raw").exists()


def test_fetch_names_a_missing_file(tmp_path, mnist_dir):
    local = tmp_path / "local"
    shutil.copytree(mnist_dir, local)
    (local / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: file not found"):
        data.fetch_raw(tmp_path / "raw", MNIST, local)
    assert not (tmp_path / "raw").exists()


def test_fetch_names_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nowhere: MNIST folder not found"):
        data.fetch_raw(tmp_path / "raw", MNIST, tmp_path / "nowhere")


@pytest.mark.skipif(not Path(DATASETS["fashion-mnist"].local_dir).is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it)")
def test_fashion_mnist_from_debians_package(tmp_path):
    fashion = DATASETS["fashion-mnist"]
    data.fetch_raw(tmp_path / "raw", fashion, Path(fashion.local_dir))
    summary = data.make_splits(tmp_path / "raw", tmp_path / "processed", 48_000, 12_000, seed=1)
    assert summary["splits"]["test"]["class_counts"] == [1000] * 10  # Fashion-MNIST: 1,000 test images per class
    with pytest.raises(DataError, match="checksum mismatch: expected MNIST data"):  # not MNIST
        data.fetch_raw(tmp_path / "raw2", MNIST, Path(fashion.local_dir))


def test_real_mnist_decodes_to_the_published_counts(tmp_path, mnist_dir):
    raw = tmp_path / "raw"
    data.fetch_raw(raw, MNIST, mnist_dir)
    summary = data.make_splits(raw, tmp_path / "processed", 48_000, 12_000, seed=1)
    s = summary["splits"]
    assert (s["train"]["count"], s["valid"]["count"], s["test"]["count"]) == (48_000, 12_000, 10_000)
    # per-class counts from the MNIST README in ../shared/mnist
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert [a + b for a, b in zip(s["train"]["class_counts"], s["valid"]["class_counts"])] == train_counts
    assert s["test"]["class_counts"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    images, labels = data.load_split(tmp_path / "processed", "valid")
    assert images.shape == (12_000, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64


def test_mnist_dir_overrides_local_dir(tmp_path, mnist_dir):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["local_dir"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ran = run_stage("download.py", "--out", "raw", cwd=tmp_path, env={"MNIST_DIR": mnist_dir})
    assert ran.returncode == 0, ran.stderr
    assert f"MNIST from {mnist_dir}" in ran.stdout
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILES)
    ran = run_stage("download.py", "--out", "raw2", cwd=tmp_path, env={"MNIST_DIR": None})
    assert ran.returncode == 1 and "nowhere: MNIST folder not found (from data.local_dir)" in ran.stderr
    params["data"]["local_dir"] = "default"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ran = run_stage("download.py", "--out", "raw3", cwd=tmp_path, env={"MNIST_DIR": mnist_dir})
    assert ran.returncode == 0 and f"MNIST from {mnist_dir}" in ran.stdout


def test_empty_image_file_is_refused_at_the_split(tmp_path, mnist_dir):
    raw = tmp_path / "raw"
    data.fetch_raw(raw, MNIST, mnist_dir)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).unlink()
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros((0,)))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: holds 0 images"):
        data.make_splits(raw, tmp_path / "processed", 48_000, 12_000, seed=1)
    assert not (tmp_path / "processed").exists()


def test_a_class_missing_from_a_split_is_refused(tmp_path, images):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (600, 28, 28)))
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(600) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 9)  # no 9 in the test set
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: the test split has no examples of class 9"):
        data.make_splits(raw, tmp_path / "processed", 500, 100, seed=1)
    assert not (tmp_path / "processed").exists()


def test_a_relative_data_folder_is_the_projects_also_when_dvcs_queue_runs_the_stage_in_a_copy(tmp_path):
    """`dvc exp run --queue` + `dvc queue start` run each experiment in <project>/.dvc/tmp/exps/<id>/: the default
    ../shared/mnist means the folder beside the project, not beside that copy."""
    from mnistbench.datasets import resolve_source
    from mnistbench.settings import project_root

    project = tmp_path / "project"
    queued = project / ".dvc" / "tmp" / "exps" / "tmpa1b2c3"
    queued.mkdir(parents=True)
    assert project_root(queued) == project and project_root(project) == project
    assert resolve_source("../shared/mnist", queued) == project / "../shared/mnist"
    assert resolve_source("../shared/mnist", project) == project / "../shared/mnist"
    assert resolve_source("/data/mnist", queued) == Path("/data/mnist")
