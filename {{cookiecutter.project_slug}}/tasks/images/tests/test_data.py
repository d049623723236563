"""The image example's data: scripts/prepare_dataset.py writes a synthetic set (or unpacks yours
from rawdata/) in the layout src/data.py reads, and src/data.py reads it, or says in one line
what is missing or malformed."""

import csv
import shutil
import sys
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import prepare_dataset
import pytest
import torch
from PIL import Image

import data
import splits


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
    assert dataset.info["input_shape"] == [3, 32, 32]  # auto: the images' own side
    assert dataset.info["classes"] == sorted(prepare_dataset.CLASSES)
    images = torch.stack([dataset.val[i][0] for i in range(len(dataset.val))])
    channels = images.transpose(0, 1).flatten(1)
    assert torch.allclose(channels.mean(1), torch.zeros(3), atol=0.05)
    assert torch.allclose(channels.std(1), torch.ones(3), atol=0.05)
    assert dataset.test.targets is None and dataset.test[0][1] == -1
    assert dataset.test.ids == sorted(p.stem for p in (synthetic_dataset / "test").iterdir())


def test_the_splits_hold_file_names_not_pixels(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    assert all(isinstance(path, Path) for path in dataset.train.paths)
    assert not any(
        isinstance(v, torch.Tensor) and v.dim() > 1 for v in vars(dataset.train).values()
    )


def test_training_images_are_augmented_under_their_own_seed_and_others_are_not(synthetic_dataset):
    train = splits.Seeded(data.load(synthetic_dataset, 0.1, seed=0).train)
    assert torch.equal(train[(3, 11)][0], train[(3, 11)][0])  # same example and seed: same crop
    assert not torch.equal(train[(3, 11)][0], train[(3, 12)][0])
    val = data.load(synthetic_dataset, 0.1, seed=0).val
    assert torch.equal(val[3][0], val[3][0])
    unaugmented = data.load(synthetic_dataset, 0.1, 0, options=Namespace(augment=False)).train
    assert torch.equal(unaugmented[3][0], unaugmented[3][0])


def write(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def mixed_images(folder):
    """Folders per class whose names have spaces and Unicode; images of several sizes, modes and
    formats, one with an EXIF rotation: what competitions ship. Returns the rotated one."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    makers = {
        "rgb.jpg": lambda: Image.fromarray(pixels),
        "grey.png": lambda: Image.fromarray(pixels).convert("L").resize((90, 50)),
        "rgba.png": lambda: Image.fromarray(pixels).convert("RGBA"),
        "palette.png": lambda: Image.fromarray(pixels).convert("P").resize((33, 77)),
        "cmyk.jpg": lambda: Image.fromarray(pixels).convert("CMYK"),
        "deep.png": lambda: Image.fromarray(pixels[..., 0].astype(np.uint16) * 257),
        "web.webp": lambda: Image.fromarray(pixels).resize((128, 96)),
        "old.bmp": lambda: Image.fromarray(pixels).resize((20, 20)),
    }
    for klass in ("Black-grass", "Common wheat", "Sugar beet ß"):
        for name, make in makers.items():
            write(make(), folder / "train" / klass / name)
    rotated = Image.fromarray(pixels)
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    rotated.save(folder / "train" / "Common wheat" / "turned.jpg", exif=exif)
    write(Image.fromarray(pixels), folder / "test" / "0a1b.png")
    return folder / "train" / "Common wheat" / "turned.jpg"


def test_folders_per_class_of_mixed_sizes_modes_and_formats_load_as_one_size(tmp_path):
    turned = mixed_images(tmp_path)
    options = Namespace(image_size=24, augment=True)
    dataset = data.load(tmp_path, 0.2, seed=0, options=options)

    assert dataset.info["classes"] == ["Black-grass", "Common wheat", "Sugar beet ß"]
    assert len(dataset.train) + len(dataset.val) == 25
    for split in (dataset.train, dataset.val, dataset.test):
        for index in range(len(split)):
            assert split[index][0].shape == (3, 24, 24)
    assert dataset.test.ids == ["0a1b"]
    assert tuple(data.read_image(turned).shape) == (3, 60, 40)  # upright: width 40, height 60
    deep = data.read_image(tmp_path / "train" / "Common wheat" / "deep.png")
    plain = data.read_image(tmp_path / "train" / "Common wheat" / "rgb.jpg")
    assert deep.dtype == torch.uint8 and abs(deep.float().mean() - plain[0].float().mean()) < 3


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
    elif how == "a corrupt image":
        first = sorted((folder / "train").iterdir())[7]
        first.write_bytes(b"not a png")
        return first.name
    return "train"


@pytest.mark.parametrize(
    "how", ["no train.csv", "no label column", "an id without its image", "a corrupt image"]
)
def test_a_malformed_dataset_is_reported_in_one_line_naming_the_problem(
    synthetic_dataset, tmp_path, how
):
    folder = copy_of(synthetic_dataset, tmp_path)
    named = damage(folder, how)

    with pytest.raises(data.DatasetError) as error:
        data.load(folder, 0.1, seed=0)

    message = str(error.value)
    assert "\n" not in message and str(folder) in message and named in message


def test_skip_bad_images_leaves_unreadable_files_out_with_a_count(
    synthetic_dataset, tmp_path, capsys
):
    folder = copy_of(synthetic_dataset, tmp_path)
    named = damage(folder, "a corrupt image")

    dataset = data.load(folder, 0.1, seed=0, options=Namespace(skip_bad_images=True))

    assert len(dataset.train) + len(dataset.val) == 1999
    assert (
        f"skipped 1 unreadable image(s) (first: {folder / 'train' / named})"
        in capsys.readouterr().out
    )


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
