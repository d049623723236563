"""The image example's data and model: scripts/prepare_dataset.py writes a synthetic set (or
unpacks yours from rawdata/) in a layout src/data.py reads, and src/data.py reads it, or says in
one line what is missing or malformed; src/model.py's torchvision backbones get a head sized
from the data and the fine-tuning options (--backbone-lr-scale, --freeze-epochs), and
predict.py rebuilds a saved one without downloading anything. Tests never download: they build
backbones with random weights."""

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import prepare_dataset
import pytest
import torch
from aws_fakes import run_script
from PIL import Image

import checkpoint
import data
import model as model_code
import options
import saved_model
import splits
import train
from launcher import synthetic
from options import PROJECT_ROOT, build_parser


def write_synthetic(out, *options):
    prepare_dataset.main(["synthetic", "--out", str(out), *map(str, options)])
    return out


def test_synthetic_set_has_the_layout_data_py_reads_with_balanced_classes(tmp_path):
    folder = write_synthetic(tmp_path, "--train-size", 100, "--test-size", 30)
    with open(folder / "train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 100 and {row["label"] for row in rows} == set(synthetic.CLASSES)
    labels = [row["label"] for row in rows]
    assert {labels.count(name) for name in synthetic.CLASSES} == {10}
    assert sorted(p.stem for p in (folder / "train").iterdir()) == sorted(r["id"] for r in rows)
    assert len(list((folder / "test").iterdir())) == 30
    with Image.open(folder / "train" / f"{rows[0]['id']}.png") as image:
        assert (image.mode, image.size) == ("RGB", (32, 32))
    assert data.problems(folder) == []


def test_the_same_seed_gives_the_same_images_and_another_seed_others(tmp_path):
    first = write_synthetic(tmp_path / "a", "--train-size", 40, "--test-size", 10, "--seed", 7)
    again = write_synthetic(tmp_path / "b", "--train-size", 40, "--test-size", 10, "--seed", 7)
    other = write_synthetic(tmp_path / "c", "--train-size", 40, "--test-size", 10, "--seed", 8)

    def pixels(folder):
        return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*/*.png"))])

    assert np.array_equal(pixels(first), pixels(again))
    assert (first / "train.csv").read_text() == (again / "train.csv").read_text()
    assert not np.array_equal(pixels(first), pixels(other))


def test_load_splits_normalises_with_training_statistics_and_keeps_test_ids(synthetic_dataset):
    dataset = data.load(synthetic_dataset, 0.1, seed=0)
    assert (len(dataset.train), len(dataset.val)) == (1800, 200)
    assert dataset.info["input_shape"] == [3, 32, 32]  # auto: the images' own side
    assert dataset.info["classes"] == sorted(synthetic.CLASSES)
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


def test_a_torchvision_backbone_gets_a_head_sized_for_the_classes():
    info = {"classes": list("abc"), "backbone": "resnet18", "pretrained": False}
    net = model_code.build(info | {"input_shape": [3, 32, 32]}, Namespace(width=16))
    assert net.head.out_features == 3 and net.head.in_features == 512
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_pretrained_weights_set_the_image_size_and_normalisation_without_a_download(
    synthetic_dataset, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", "/nonexistent")  # a download would fail here
    options = Namespace(backbone="efficientnet_b0", pretrained=True, image_size=None)
    info = data.load(synthetic_dataset, 0.1, seed=0, options=options).info
    assert info["image_size"] == 224 and info["mean"] == pytest.approx([0.485, 0.456, 0.406])


def resnet18_info(classes):
    return {"classes": classes, "backbone": "resnet18", "pretrained": False,
            "input_shape": [3, 32, 32]}  # fmt: skip


def test_the_backbone_learns_at_its_share_of_the_rate_and_stays_fixed_while_frozen(
    synthetic_dataset, tmp_path, train_argv
):
    options = ["--backbone", "resnet18", "--image-size", "32", "--train-size", "256"]
    options += ["--freeze-epochs", "1", "--backbone-lr-scale", "0.1", "--epochs", "1"]
    config = build_parser().parse_args(train_argv(synthetic_dataset, tmp_path, *options))
    groups = model_code.param_groups(model_code.build(resnet18_info(list("ab")), config), config)
    assert [group["lr"] for group in groups] == pytest.approx([config.lr * 0.1, config.lr])
    torch.manual_seed(config.seed)  # as train.py seeds before it builds the model
    initial = model_code.build(resnet18_info(list("0123456789")), config).state_dict()

    with contextlib.redirect_stdout(io.StringIO()):
        train.train(config)  # one epoch, frozen

    trained = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    backbone = [name for name in initial if name.startswith("backbone.")]
    assert all(torch.equal(initial[name], trained[name]) for name in backbone)
    assert not torch.equal(initial["head.weight"], trained["head.weight"])


def test_a_folder_per_class_dataset_trains_and_predicts_class_names_with_a_torchvision_backbone(
    tmp_path, train_argv
):
    classes = ["Loose Silky-bent", "Common wheat", "Fat Hen"]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    dataset = tmp_path / "dataset"
    for index in range(60):
        size = (40 + index % 7 * 5, 30 + index % 5 * 9)  # mixed sizes, and some grey
        path = dataset / "train" / classes[index % 3] / f"{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colours[index % 3]).convert("L" if index % 4 else "RGB").save(path)
    (dataset / "test").mkdir()
    for index in range(6):
        Image.new("RGB", (50, 50), colours[index % 3]).save(dataset / "test" / f"t{index}.png")
    run = tmp_path / "run"
    options = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "16"]
    with contextlib.redirect_stdout(io.StringIO()):
        train.train(build_parser().parse_args(train_argv(dataset, run, "--epochs", "2", *options)))
    about = json.loads((run / "model" / "model.json").read_text())
    assert about["data"]["backbone"] == "resnet18" and about["data"]["image_size"] == 32
    assert saved_model.load(run / "model")[0].head.out_features == 3

    out = tmp_path / "predictions"
    predict = [PROJECT_ROOT / "scripts" / "predict.py", "--model", run / "model"]
    predict += ["--data-dir", dataset, "--out-dir", out]
    done = subprocess.run([sys.executable, *predict], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out / "submission.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["id"] for row in rows] == [f"t{index}" for index in range(6)]
    assert {row["label"] for row in rows} <= set(classes)


def test_an_image_that_fails_to_decode_mid_training_ends_the_run_in_one_line_naming_it(
    synthetic_dataset, tmp_path, train_argv
):
    folder = tmp_path / "dataset"
    shutil.copytree(synthetic_dataset, folder)
    broken = sorted((folder / "train").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:120])  # the header reads; the pixels are cut off
    argv = train_argv(folder, tmp_path / "run", "--epochs", "1", "--num-workers", "1")
    command = [sys.executable, PROJECT_ROOT / "src" / "train.py", *argv]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 1
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and lines[0].startswith("error: cannot read")


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """A synthetic set as many competitions ship theirs: train/<class name>/ folders (names with
    a space) of PNGs and JPEGs in several modes and sizes, and an unlabelled test/."""
    folder = tmp_path_factory.mktemp("folders")
    write_synthetic(folder, "--layout", "folders", "--train-size", 600, "--test-size", 40)
    return folder


def test_the_folders_layout_mixes_sizes_modes_and_formats_under_class_names(class_folders):
    classes = sorted(p.name for p in (class_folders / "train").iterdir())
    assert classes == sorted(name.replace("-", " ") for name in synthetic.CLASSES)
    files = sorted((class_folders / "train").glob("*/*"))
    assert {path.suffix for path in files} == {".png", ".jpg"}
    with contextlib.ExitStack() as stack:
        images = [stack.enter_context(Image.open(path)) for path in files[:80]]
        assert {image.mode for image in images} >= {"RGB", "RGBA", "P"}
        assert len({image.size for image in images}) > 20
    assert data.problems(class_folders) == []


def test_class_folders_train_resume_after_sigterm_to_the_same_weights_and_predict_class_names(
    class_folders, tmp_path, train_argv, stop_training_at
):
    argv = train_argv(class_folders, tmp_path / "whole", "--epochs", "2", "--num-workers", "2")
    with contextlib.redirect_stdout(io.StringIO()):
        train.train(build_parser().parse_args(argv))
    stopped = train_argv(class_folders, tmp_path / "stopped", "--epochs", "2")  # workers: auto
    stop_training_at(1, 2)
    with pytest.raises(checkpoint.Interrupted), contextlib.redirect_stdout(io.StringIO()):
        train.train(build_parser().parse_args(stopped))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        train.train(build_parser().parse_args(stopped))
    assert "resuming from" in printed.getvalue()
    whole = torch.load(tmp_path / "whole" / "model" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "stopped" / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)

    out = tmp_path / "predictions"
    predict = [PROJECT_ROOT / "scripts" / "predict.py", "--model", tmp_path / "whole" / "model"]
    predict += ["--data-dir", class_folders, "--out-dir", out]
    done = subprocess.run([sys.executable, *predict], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out / "submission.csv", newline="") as file:
        labels = {row["label"] for row in csv.DictReader(file)}
    assert labels and labels <= {name.replace("-", " ") for name in synthetic.CLASSES}


@pytest.mark.slow
def test_class_folders_train_under_torchrun_with_two_processes(class_folders, tmp_path, train_argv):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, PROJECT_ROOT / "src" / "train.py"]
    command += train_argv(class_folders, tmp_path, "--epochs", "1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processes=2" in done.stdout and re.search(r"epoch=1 .*val_accuracy=", done.stdout)
    assert saved_model.load(tmp_path / "model")[1]["data"]["classes"][0] == "blue cross"


@pytest.mark.slow
def test_class_folders_run_as_a_local_job_and_its_model_predicts_them(
    class_folders, tmp_path, aws_credentials
):
    config = tmp_path / "config" / "folders.yaml"
    config.parent.mkdir()
    tracking = "tracking: false\n" if options.HAS_TRACKING else ""  # tracking has its own tests
    config.write_text("epochs: 1\nbatch-size: 64\n" + tracking)
    out = tmp_path / "jobs"
    command = [PROJECT_ROOT / "scripts" / "run_job.py", "--local", "--config", config]
    command += ["--out-dir", out, "--dataset-uri", class_folders]
    done = run_script(command, env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (model,) = out.glob("*/model/model.json")
    assert json.loads(model.read_text())["data"]["classes"][-1] == "red triangle"
