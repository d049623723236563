"""The MNIST example's data: scripts/prepare_dataset.py writes the synthetic set in torchvision's
MNIST layout, deterministic per seed (the real download fails with one clear line when there is no
network), and src/data.py reads it, or says in one line what is missing or malformed."""

import gzip
import shutil
import socket
import struct

import numpy as np
import prepare_dataset
import pytest
import torch
from torchvision.datasets import MNIST

import data
import train
from launcher import synthetic
from options import PROJECT_ROOT

RAW_NAMES = {  # torchvision's MNIST layout: the dataset channel's contract
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
}


def write_synthetic(out, *options):
    prepare_dataset.main(["synthetic", "--out", str(out), *map(str, options)])
    return out / "MNIST" / "raw"


def idx_header(path):
    content = path.read_bytes()
    magic = struct.unpack(">I", content[:4])[0]
    dims = struct.unpack(f">{magic & 0xFF}I", content[4 : 4 + 4 * (magic & 0xFF)])
    return magic, dims, len(content)


def test_synthetic_set_is_mnist_idx_files_that_torchvision_reads(tmp_path):
    raw = write_synthetic(tmp_path, "--train-size", 300, "--test-size", 100)
    assert {path.name for path in raw.iterdir()} == RAW_NAMES
    assert idx_header(raw / "train-images-idx3-ubyte") == (0x803, (300, 28, 28), 16 + 300 * 784)
    assert idx_header(raw / "t10k-labels-idx1-ubyte") == (0x801, (100,), 8 + 100)
    train = MNIST(root=tmp_path, train=True, download=False)
    assert tuple(train.data.shape) == (300, 28, 28)
    assert train.targets.bincount().tolist() == [30] * 10  # balanced classes


def test_same_seed_gives_the_same_bytes_another_seed_other_bytes(tmp_path):
    first = write_synthetic(tmp_path / "a", "--train-size", 200, "--test-size", 50, "--seed", 7)
    again = write_synthetic(tmp_path / "b", "--train-size", 200, "--test-size", 50, "--seed", 7)
    other = write_synthetic(tmp_path / "c", "--train-size", 200, "--test-size", 50, "--seed", 8)
    for name in RAW_NAMES:
        assert (first / name).read_bytes() == (again / name).read_bytes()
    assert (first / "train-images-idx3-ubyte").read_bytes() != (
        other / "train-images-idx3-ubyte"
    ).read_bytes()


def test_every_image_is_different_and_no_test_image_copies_a_training_image():
    train_images, _ = synthetic.synthetic_digits(1000, seed=[0, 0])
    test_images, _ = synthetic.synthetic_digits(1000, seed=[0, 1])
    everything = np.concatenate([train_images, test_images]).reshape(2000, -1)
    assert len(np.unique(everything, axis=0)) == 2000


def test_digits_vary_in_place_size_and_ink_like_handwriting():
    images, labels = synthetic.synthetic_digits(500, seed=[1, 0])
    ink = images.astype(float) / 255
    rows, columns = np.arange(28)[None, :, None], np.arange(28)[None, None, :]
    mass = ink.sum(axis=(1, 2))
    centre_y = (ink * rows).sum(axis=(1, 2)) / mass
    centre_x = (ink * columns).sum(axis=(1, 2)) / mass
    assert 11 < centre_y.mean() < 16 and 11 < centre_x.mean() < 16  # centred, like MNIST
    assert centre_y.std() > 0.8 and centre_x.std() > 0.8  # but not all in the same place
    ones = mass[labels == 1]
    assert ones.std() / ones.mean() > 0.15  # stroke width and length vary within a class
    assert (images < 64).mean() > 0.7  # mostly dark background


def test_sizes_below_one_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        write_synthetic(tmp_path, "--train-size", 0)
    assert exit.value.code == 2 and "--train-size" in capsys.readouterr().err


def test_default_output_is_the_projects_dataset_folder_from_any_directory():
    for source in ("synthetic", "mnist"):
        assert prepare_dataset.build_parser().parse_args([source]).out == PROJECT_ROOT / "dataset"


def test_mnist_download_without_network_fails_with_one_clear_line_and_keeps_the_data(
    tmp_path, monkeypatch
):
    raw = write_synthetic(tmp_path, "--train-size", 100, "--test-size", 20)
    before = {name: (raw / name).read_bytes() for name in RAW_NAMES}
    with socket.socket() as listener:  # a local port that refuses connections once closed
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(SystemExit) as exit:
        prepare_dataset.main(["mnist", "--out", str(tmp_path)])
    message = str(exit.value.code)
    assert message.startswith("error: could not download MNIST") and "\n" not in message
    assert "Connection refused" in message and "prepare_dataset.py synthetic" in message
    assert {name: (raw / name).read_bytes() for name in RAW_NAMES} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["MNIST"]  # no scratch left


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--train-size", "0"], "argument --train-size: must be from 1 to 1000000, got 0"),
        (["--test-size", "10000000000"], "argument --test-size: must be from 1 to 1000000"),
        (["--seed", "-1"], "argument --seed: must be from 0 to 4294967295, got -1"),
        (["--train-size", "1e3"], "argument --train-size: invalid whole number value: '1e3'"),
    ],
)
def test_bad_synthetic_options_are_refused_in_one_line_writing_nothing(
    tmp_path, capsys, options, message
):
    with pytest.raises(SystemExit) as exit:
        write_synthetic(tmp_path / "out", *options)

    assert exit.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_is_a_file_fails_in_one_line_and_keeps_the_file(tmp_path):
    occupied = tmp_path / "dataset"
    occupied.write_text("my notes")

    with pytest.raises(SystemExit) as exit:
        write_synthetic(occupied, "--train-size", "10", "--test-size", "10")

    message = exit.value.code
    assert isinstance(message, str) and "\n" not in message and str(occupied) in message
    assert occupied.read_text() == "my notes"


# src/data.py


def test_missing_dataset_stops_the_cli_with_one_actionable_line(tmp_path, train_argv):
    absent = tmp_path / "no-data"
    with pytest.raises(SystemExit) as exit:
        train.main(train_argv(absent, tmp_path))
    message = exit.value.code  # sys.exit(message): printed to stderr, exit status 1
    assert isinstance(message, str) and "\n" not in message
    assert str(absent / "MNIST" / "raw") in message
    assert "python scripts/prepare_dataset.py synthetic" in message
    assert not (tmp_path / "model").exists()


def damage(raw, how):
    if how == "truncated images":
        path = raw / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:5000])
    elif how == "not an IDX file":
        (raw / "t10k-labels-idx1-ubyte").write_text("hello")
    elif how == "fewer labels than images":
        prepare_dataset.write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10, np.uint8))
    elif how == "labels beyond 9":
        prepare_dataset.write_idx(raw / "t10k-labels-idx1-ubyte", np.full(500, 12, np.uint8))
    elif how == "a file missing":
        (raw / "t10k-images-idx3-ubyte").unlink()
    elif how == "truncated gzip":
        path = raw / "train-images-idx3-ubyte"
        compressed = gzip.compress(path.read_bytes())
        path.unlink()
        path.with_name(f"{path.name}.gz").write_bytes(compressed[: len(compressed) // 2])
    elif how == "gzip name, other content":
        path = raw / "t10k-labels-idx1-ubyte"
        path.rename(path.with_name(f"{path.name}.gz"))


@pytest.mark.parametrize(
    "how",
    [
        "truncated images",
        "not an IDX file",
        "fewer labels than images",
        "labels beyond 9",
        "a file missing",
        "truncated gzip",
        "gzip name, other content",
    ],
)
def test_malformed_dataset_is_reported_in_one_actionable_line(synthetic_dataset, tmp_path, how):
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_dataset, broken)
    damage(broken / "MNIST" / "raw", how)
    with pytest.raises(data.DatasetError) as error:
        data.load(broken, 0.1, seed=0)
    message = str(error.value)
    assert "\n" not in message
    assert str(broken) in message and "prepare_dataset.py synthetic" in message


def test_in_a_job_a_missing_dataset_points_at_the_s3_upload(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAINING", str(tmp_path))
    with pytest.raises(data.DatasetError, match="upload_dataset.py"):
        data.load(tmp_path, 0.1, seed=0)


def test_gzipped_files_are_read_like_plain_ones(synthetic_dataset, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_FILES:
        content = (synthetic_dataset / "MNIST" / "raw" / name).read_bytes()
        (raw / f"{name}.gz").write_bytes(gzip.compress(content))
    plain, zipped = data.load(synthetic_dataset, 0.1, 0), data.load(tmp_path, 0.1, 0)
    for name in ("train", "val", "test"):
        a, b = getattr(plain, name), getattr(zipped, name)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


def test_images_are_normalised_with_the_training_part_statistics(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    train_part = dataset.train.inputs.float()
    assert train_part.shape == (1800, 1, 28, 28) and dataset.info["input_shape"] == [1, 28, 28]
    assert abs(train_part.mean().item()) < 0.01 and abs(train_part.std().item() - 1) < 0.01
    saved_info = {**dataset.info, "mean": 0.0, "std": 1.0}  # as predict.py passes a model's
    again = data.load(synthetic_dataset, 0.1, seed=0, info=saved_info)
    assert again.info == saved_info and not torch.equal(again.train.inputs, dataset.train.inputs)
