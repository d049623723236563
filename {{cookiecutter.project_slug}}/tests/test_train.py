"""src/train.py: options as SageMaker passes them, data errors, the epoch line, the outputs,
and checkpoint/resume (an interrupted run, resumed, ends exactly like one that never stopped).

Training runs in this process on the tiny synthetic set where it can; a few tests start
train.py as SageMaker does, in a process of its own.
"""

import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import prepare_dataset
import pytest
import torch
from PIL import Image

import checkpoint
import data
import saved_model
import splits
import train
from options import PROJECT_ROOT, build_parser

TRAIN_SCRIPT = PROJECT_ROOT / "src" / "train.py"
EPOCH_LINE = re.compile(
    r"epoch=(\d+) train_loss=(\d+\.\d+) val_loss=(\d+\.\d+) val_accuracy=([01]\.\d+)"
)
CPU = torch.device("cpu")


def train_quietly(config):
    """train(config) with its printed lines returned: (history, lines)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        history = train.train(config)
    return history, printed.getvalue().splitlines()


def weights(run_dir):
    return torch.load(run_dir / "model" / "model.pt", weights_only=True)


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs"


def job_environment(**variables):
    """This process's environment without job variables, plus `variables`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    return {**inherited, **{name: str(value) for name, value in variables.items()}}


@pytest.fixture(scope="module")
def finished_run(synthetic_dataset, tmp_path_factory, train_argv):
    """Two uninterrupted epochs on the tiny set; the reference for the resume tests."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    config = build_parser().parse_args(train_argv(synthetic_dataset, run_dir, "--epochs", "2"))
    history, lines = train_quietly(config)
    return SimpleNamespace(dir=run_dir, history=history, lines=lines)


# Options


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_booleans_accept_what_sagemaker_passes(text, expected):
    config = build_parser().parse_args(["--amp", text, "--deterministic", text, "--resume", text])
    assert (config.amp, config.deterministic, config.resume) == (expected, expected, expected)


@pytest.mark.parametrize(
    "argv",
    [
        ["--amp", "maybe"],
        ["--epochs", "0"],
        ["--epochs", "two"],
        ["--lr", "-0.1"],
        ["--lr", "inf"],
        ["--lr", "nan"],
        ["--weight-decay", "-1"],
        ["--weight-decay", "nan"],
        ["--width", "100000"],
        ["--log-interval", "-1"],
        ["--seed", "-1"],
        ["--train-size", "1e3"],
        ["--learning-rate", "0.1"],
        ["--epoch", "3"],  # no abbreviations: a config key must be the option's full name
    ],
)
def test_bad_values_and_unknown_options_are_refused_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(argv)
    assert exit.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_paths_come_from_sagemaker_variables_else_from_the_project(monkeypatch):
    local = build_parser().parse_args([])
    assert (local.data_dir, local.model_dir, local.output_data_dir, local.checkpoint_dir) == (
        PROJECT_ROOT / "dataset",
        PROJECT_ROOT / "result" / "model",
        PROJECT_ROOT / "result" / "output",
        PROJECT_ROOT / "result" / "checkpoints",
    )
    monkeypatch.setenv("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training")
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    job = build_parser().parse_args([])
    assert (job.data_dir, job.model_dir, job.output_data_dir, job.checkpoint_dir) == (
        Path("/opt/ml/input/data/training"),
        Path("/opt/ml/model"),
        Path("/opt/ml/output/data"),
        Path("/opt/ml/checkpoints"),  # what SageMaker syncs to the job's checkpoint S3 URI
    )


# Data


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


# A finished run


def test_each_epoch_prints_exactly_the_contract_line(finished_run):
    epoch_lines = [line for line in finished_run.lines if line.startswith("epoch=")]
    assert len(epoch_lines) == 2
    for number, line in enumerate(epoch_lines, start=1):
        match = EPOCH_LINE.fullmatch(line)
        assert match, line
        assert int(match.group(1)) == number and 0 <= float(match.group(4)) <= 1


def test_metrics_csv_has_the_contract_header_and_the_printed_values(finished_run):
    with open(finished_run.dir / "output" / "metrics.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    printed = [
        EPOCH_LINE.fullmatch(line) for line in finished_run.lines if line.startswith("epoch=")
    ]
    assert len(rows) == 1 + len(printed)
    for row, match in zip(rows[1:], printed, strict=True):
        assert row[0] == match.group(1)
        for value, shown in zip(row[1:], match.groups()[1:], strict=True):
            assert f"{float(value):.4f}" == shown


def test_one_epoch_on_the_tiny_set_reaches_90_percent(finished_run):
    assert finished_run.history[0]["val_accuracy"] >= 0.9


def test_the_saved_model_rebuilds_from_its_folder_alone_and_scores_as_reported(
    finished_run, synthetic_dataset
):
    model, about = saved_model.load(finished_run.dir / "model")
    assert about["options"]["width"] == 16 and len(about["data"]["classes"]) == 10
    options = about["options"]
    dataset = data.load(synthetic_dataset, options["val_fraction"], options["seed"], about["data"])
    with torch.no_grad():
        outputs = torch.cat([model(inputs) for inputs, _ in splits.batches(dataset.val, 500, CPU)])
    accuracy = (outputs.argmax(1) == dataset.val.targets).double().mean().item()
    assert accuracy == pytest.approx(finished_run.history[-1]["val_accuracy"], abs=1e-6)
    test_line = next(line for line in finished_run.lines if line.startswith("test_loss="))
    reported = json.loads((finished_run.dir / "output" / "test_metrics.json").read_text())
    assert test_line == f"test_loss={reported['test_loss']:.4f} test_accuracy=" + format(
        reported["test_accuracy"], ".4f"
    )


def test_plots_are_png_images(finished_run):
    for name in ("curves.png", "confusion_matrix.png"):
        with Image.open(finished_run.dir / "output" / name) as image:
            assert image.format == "PNG" and min(image.size) >= 300


# Checkpoints and resume


@pytest.mark.parametrize(
    ("epoch", "batch"),
    [(1, 5), (2, -1)],  # early in the first epoch; at the last step, before evaluation
    ids=["mid-epoch-1", "end-of-epoch-2"],
)
def test_interrupted_then_resumed_run_ends_bit_for_bit_like_an_uninterrupted_one(
    finished_run, synthetic_dataset, tmp_path, train_argv, stop_training_at, epoch, batch
):
    config = build_parser().parse_args(train_argv(synthetic_dataset, tmp_path, "--epochs", "2"))
    steps = int(re.search(r"steps_per_epoch=(\d+)", finished_run.lines[0])[1])
    stop_training_at(epoch, batch % steps)  # -1: the last batch, however many the data makes
    with pytest.raises(checkpoint.Interrupted) as stopped:
        train_quietly(config)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert (tmp_path / "checkpoints" / "checkpoint.pt").is_file()
    assert not (tmp_path / "model" / "model.pt").exists()

    history, lines = train_quietly(config)

    assert any(line.startswith("resuming from") for line in lines)
    assert history == finished_run.history
    assert_same_weights(weights(tmp_path), weights(finished_run.dir))
    metrics = (tmp_path / "output" / "metrics.csv").read_text()
    assert metrics == (finished_run.dir / "output" / "metrics.csv").read_text()


def test_checkpoint_of_other_hyperparameters_is_set_aside_and_its_own_command_still_resumes(
    synthetic_dataset, tmp_path, train_argv, stop_training_at
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--train-size", "500")
    stop_training_at(2, 1)
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(build_parser().parse_args(argv))

    history, lines = train_quietly(build_parser().parse_args([*argv, "--lr", "0.02"]))
    assert any(line.startswith("set aside") and "(other lr)" in line for line in lines)
    assert [row["epoch"] for row in history] == [1, 2]
    assert len(list((tmp_path / "checkpoints").glob("checkpoint-*.pt"))) == 1

    history, lines = train_quietly(build_parser().parse_args(argv))
    assert any(line.startswith("resuming from") and "epoch 2, step 2" in line for line in lines)
    assert not any(line.startswith("epoch=1 ") for line in lines)  # epoch 1 was not trained again
    assert [row["epoch"] for row in history] == [1, 2]


@pytest.mark.parametrize(
    ("change", "resumes"),
    [
        (["--test-size", "100"], False),  # any option not declared a run control: a new run
        (["--amp", "false"], False),
        (["--log-interval", "5", "--checkpoint-interval", "0"], True),  # run controls
    ],
)
def test_a_checkpoint_is_resumed_only_under_the_same_options_but_run_controls(
    synthetic_dataset, tmp_path, train_argv, change, resumes
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--train-size", "500")
    train_quietly(build_parser().parse_args(argv))

    _, lines = train_quietly(build_parser().parse_args([*argv, *change]))

    assert any(line.endswith("writing its results again") for line in lines) == resumes
    assert any(line.startswith("set aside") for line in lines) == (not resumes)


def test_rerunning_a_finished_run_writes_its_results_again_without_training(
    synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--train-size", "500")
    first, _ = train_quietly(build_parser().parse_args(argv))
    before = weights(tmp_path)
    (tmp_path / "model" / "model.pt").unlink()
    again, lines = train_quietly(build_parser().parse_args(argv))
    assert again == first
    assert not any(line.startswith("epoch") for line in lines)
    assert_same_weights(weights(tmp_path), before)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143_and_a_rerun_finishes_like_an_uninterrupted_run(
    finished_run, synthetic_dataset, tmp_path, train_argv
):
    # A progress line after every step, so the signal lands early in the first epoch.
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--log-interval", "1e-9")
    command = [sys.executable, str(TRAIN_SCRIPT), *argv]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    for line in process.stdout:
        if line.startswith("epoch 1 step"):
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().endswith("run again to resume") and "Traceback" not in stderr
    assert (tmp_path / "checkpoints" / "checkpoint.pt").is_file()
    assert not (tmp_path / "model" / "model.pt").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stdout
    assert_same_weights(weights(tmp_path), weights(finished_run.dir))


# train.py, whose checkpoint.save kills the process (SIGKILL: no handler runs) right after
# saving epoch 2, step 5: a host lost without warning, at a known point.
KILLED_AFTER_A_SAVE = """
import os, runpy, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import checkpoint
real_save = checkpoint.save
def save(folder, state):
    real_save(folder, state)
    if (state["run"]["epoch"], state["run"]["step"]) == (1, 5):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_kill_without_warning_loses_only_what_followed_the_last_timed_checkpoint(
    finished_run, synthetic_dataset, tmp_path, train_argv
):
    # The interval is tiny: a checkpoint after every step.
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--checkpoint-interval", "1e-9")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_A_SAVE, str(TRAIN_SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    steps = re.search(r"steps_per_epoch=(\d+)", killed.stdout)[1]  # as the data makes it
    assert f"epoch 2 step 4/{steps}: checkpoint saved" in killed.stdout

    rerun = run_train_script(argv)

    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {tmp_path / 'checkpoints'}: epoch 2, step 5" in rerun.stdout
    assert_same_weights(weights(tmp_path), weights(finished_run.dir))
    metrics = (tmp_path / "output" / "metrics.csv").read_text()
    assert metrics == (finished_run.dir / "output" / "metrics.csv").read_text()


# As SageMaker starts it


@pytest.mark.slow
def test_runs_as_a_sagemaker_job_starts_it_from_any_directory(synthetic_dataset, tmp_path):
    opt_ml = tmp_path / "opt" / "ml"
    environment = job_environment(
        SM_CHANNEL_TRAINING=synthetic_dataset,
        SM_MODEL_DIR=opt_ml / "model",
        SM_OUTPUT_DATA_DIR=opt_ml / "output" / "data",
    )
    # Hyperparameters arrive as `--key value` strings; booleans in Python's spelling.
    argv = ["--epochs", "1", "--batch-size", "64", "--amp", "True", "--deterministic", "False"]
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *argv],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert EPOCH_LINE.search(done.stdout)
    assert (opt_ml / "model" / "model.pt").is_file()
    assert (opt_ml / "checkpoints" / "checkpoint.pt").is_file()
    outputs = {path.name for path in (opt_ml / "output" / "data").iterdir()}
    assert {"metrics.csv", "curves.png", "confusion_matrix.png"} <= outputs
    assert list(elsewhere.iterdir()) == []


def test_cli_exits_1_with_one_line_on_stderr_when_the_data_is_missing(tmp_path, train_argv):
    done = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *train_argv(tmp_path / "none", tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=job_environment(),
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "prepare_dataset.py" in done.stderr


def run_train_script(argv, prefix=(), **popen):
    return subprocess.run(
        [*prefix, sys.executable, str(TRAIN_SCRIPT), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=600,
        **popen,
    )


def test_a_diverging_run_exits_1_with_one_line_and_saves_nothing_from_it(
    synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--train-size", "500")

    done = run_train_script([*argv, "--lr", "1e6"])

    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert re.fullmatch(r"error: training diverged in epoch (\d) \(train_loss=\S+ .*", line), line
    assert "lower --lr (now 1e+06)" in line
    diverged = int(re.match(r"error: training diverged in epoch (\d)", line)[1])
    assert not (tmp_path / "model").exists()  # no model.pt: a job would end Failed
    # What is saved stops before the diverged epoch: its metrics are all finite numbers.
    rows = list(csv.DictReader(open(tmp_path / "output" / "metrics.csv"))) if diverged > 1 else []
    assert [int(row["epoch"]) for row in rows] == list(range(1, diverged))
    assert all(float(value) == float(value) for row in rows for value in row.values())


def tmpfs_prefix(folder, size):
    """A command prefix that runs the rest with a `size` tmpfs mounted on `folder` (a full disk),
    in a mount namespace of its own; skips the test where that is not allowed."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("needs unshare -m (root or user namespaces) to fill a disk safely")
    mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", mount, str(folder)]


def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_model(
    synthetic_dataset, tmp_path, train_argv
):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--train-size", "500")
    # The previous model lives on the small disk too: 60 KiB of its 100 leave no room for another.
    # The disk is gone with its namespace, so the check that the previous model.pt is untouched,
    # and no partial file left beside it, runs in there: exit code 99 if it fails.
    prefix = tmpfs_prefix(model_dir, "100k")
    keep = """
        head -c 61440 /dev/urandom > "$0/model.pt"; before=$(cksum < "$0/model.pt")
        "$@"; code=$?
        [ "$(cksum < "$0/model.pt")" = "$before" ] && [ "$(ls "$0")" = model.pt ] || exit 99
        exit $code
    """

    done = run_train_script(argv, prefix=[*prefix, "sh", "-c", keep, str(model_dir)])

    assert done.returncode == 1, done.stdout + done.stderr  # 99: the previous model was touched
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        f"error: No space left on device writing {model_dir / 'model.pt'}; "
        "nothing half-written was left"
    )
    assert (tmp_path / "checkpoints" / "checkpoint.pt").is_file()  # rerunning resumes


def test_ctrl_c_while_loading_data_exits_130_with_one_line_and_writes_nothing(
    synthetic_dataset, tmp_path, train_argv, monkeypatch, capsys
):
    real_load = data.load

    def load_then_ctrl_c(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the real signal, as from the terminal
        return loaded

    monkeypatch.setattr(data, "load", load_then_ctrl_c)
    with pytest.raises(SystemExit) as exit:
        train.main(train_argv(synthetic_dataset, tmp_path, "--epochs", "1"))

    assert exit.value.code == 130
    assert capsys.readouterr().err == "interrupted before training started; nothing written\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == []
