"""The image example's model: torchvision backbones with a head sized from the data, fine-tuning
(--backbone-lr-scale, --freeze-epochs), normalisation from pretrained weights' metadata, and a
saved model that predict.py rebuilds without downloading anything. Tests never download: they
build backbones with random weights."""

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from PIL import Image

import data
import model as model_code
import saved_model
import train
from options import PROJECT_ROOT, build_parser


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
