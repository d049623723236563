"""The image example's data: scripts/prepare_dataset.py writes a synthetic set (or unpacks yours
from rawdata/) in the layout src/data.py reads, and src/data.py reads it, or says in one line
what is missing or malformed."""

import csv
import shutil
import sys
import zipfile

import numpy as np
import prepare_dataset
import pytest
import torch
from PIL import Image

import data


def synthetic(out, *options):
    prepare_dataset.main(["synthetic", "--out", str(out), *map(str, options)])
    return out


def test_synthetic_set_has_the_layout_data_py_reads_with_balanced_classes(tmp_path):
    folder = synthetic(tmp_path, "--train-size", 100, "--test-size", 30)
    with open(folder / "train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 100 and {row["label"] for row in rows} == set(prepare_dataset.CLASSES)
    labels = [row["label"] for row in rows]
    assert {labels.count(name) for name in prepare_dataset.CLASSES} == {10}
    assert sorted(p.stem for p in (folder / "train").iterdir()) == sorted(r["id"] for r in rows)
    assert len(list((folder / "test").iterdir())) == 30
    with Image.open(folder / "train" / f"{rows[0]['id']}.png") as image:
        assert (image.mode, image.size) == ("RGB", (32, 32))
    assert data.problems(folder) == []


def test_the_same_seed_gives_the_same_images_and_another_seed_others(tmp_path):
    first = synthetic(tmp_path / "a", "--train-size", 40, "--test-size", 10, "--seed", 7)
    again = synthetic(tmp_path / "b", "--train-size", 40, "--test-size", 10, "--seed", 7)
    other = synthetic(tmp_path / "c", "--train-size", 40, "--test-size", 10, "--seed", 8)

    def pixels(folder):
        return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*/*.png"))])

    assert np.array_equal(pixels(first), pixels(again))
    assert (first / "train.csv").read_text() == (again / "train.csv").read_text()
    assert not np.array_equal(pixels(first), pixels(other))


def test_load_splits_normalises_with_training_statistics_and_keeps_test_ids(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    assert (len(dataset.train), len(dataset.val)) == (1800, 200)
    assert dataset.info["input_shape"] == [3, 32, 32]
    assert dataset.info["classes"] == sorted(prepare_dataset.CLASSES)
    channels = dataset.train.inputs.float().transpose(0, 1).flatten(1)
    assert torch.allclose(channels.mean(1), torch.zeros(3), atol=0.01)
    assert torch.allclose(channels.std(1), torch.ones(3), atol=0.01)
    assert dataset.test.targets is None
    assert dataset.test.ids == sorted(p.stem for p in (synthetic_dataset / "test").iterdir())


def copy_of(synthetic_dataset, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(synthetic_dataset, folder)
    return folder


def damage(folder, how):
    if how == "no train.csv":
        (folder / "train.csv").unlink()
    elif how == "no label column":
        (folder / "train.csv").write_text("id,class\na,b\n")
    elif how == "an id without its image":
        first = next((folder / "train").iterdir())
        first.unlink()
        return first.stem
    elif how == "images of two sizes":
        first = next((folder / "train").iterdir())
        Image.new("RGB", (40, 32)).save(first)
    elif how == "a corrupt image":
        first = next((folder / "train").iterdir())
        first.write_bytes(b"not a png")
        return first.name
    return "train"


@pytest.mark.parametrize(
    "how",
    ["no train.csv", "no label column", "an id without its image", "images of two sizes",
     "a corrupt image"],
)  # fmt: skip
def test_a_malformed_dataset_is_reported_in_one_line_naming_the_problem(
    synthetic_dataset, tmp_path, how
):
    folder = copy_of(synthetic_dataset, tmp_path)
    named = damage(folder, how)

    with pytest.raises(data.DatasetError) as error:
        data.load(folder, 0.1, seed=0)

    message = str(error.value)
    assert "\n" not in message and str(folder) in message and named in message


def test_rawdata_unpacks_an_archive_of_one_folder_into_the_dataset(synthetic_dataset, tmp_path):
    archive = tmp_path / "competition.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(synthetic_dataset.rglob("*")):
            if path.is_file():
                zipped.write(path, f"competition/{path.relative_to(synthetic_dataset)}")
        zipped.writestr("../outside.txt", "must not land outside")
    out = tmp_path / "dataset"

    prepare_dataset.main(["rawdata", str(archive), "--out", str(out)])

    assert data.problems(out) == []
    assert (out / "train.csv").read_bytes() == (synthetic_dataset / "train.csv").read_bytes()
    assert not (tmp_path / "outside.txt").exists()
    assert len(data.load(out, 0.1, seed=0).test) == len(list((out / "test").iterdir()))


def test_an_archive_without_the_layout_is_refused_in_one_line_and_changes_nothing(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "no images here")
    out = tmp_path / "dataset"

    with pytest.raises(SystemExit) as exit:
        prepare_dataset.main(["rawdata", str(archive), "--out", str(out)])

    assert "no train.csv" in exit.value.code and "\n" not in exit.value.code
    assert not out.exists()


def test_kaggle_without_its_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle", None)  # import kaggle raises ImportError

    with pytest.raises(SystemExit) as exit:
        prepare_dataset.main(["kaggle", "some-competition", "--out", str(tmp_path / "dataset")])

    assert exit.value.code == "error: the kaggle package is not installed: pip install kaggle"
