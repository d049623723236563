"""src/train.py: options as SageMaker passes them, data errors, the epoch line, the outputs,
and checkpoint/resume (an interrupted run, resumed, ends exactly like one that never stopped).

Training runs in this process on the tiny synthetic set where it can; a few tests start
train.py as SageMaker does, in a process of its own.
"""

import contextlib
import csv
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

import pytest
import torch
from PIL import Image

import checkpoint
import data
import metrics
import saved_model
import splits
import train
import watchdog
from launcher import job_results
from options import PROJECT_ROOT, build_parser

TRAIN_SCRIPT = PROJECT_ROOT / "src" / "train.py"
# epoch=1 train_loss=0.2345 val_loss=0.0567 val_accuracy=0.9821, as src/metrics.py declares.
EPOCH_LINE = re.compile(
    " ".join(
        f"{name}=(\\d+)" if name == "epoch" else f"{name}=(-?\\d+\\.\\d+)"
        for name in metrics.EPOCH_COLUMNS
    )
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


def checkpoint_files(folder):
    return sorted(folder.glob("checkpoint-*.pt"))


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
        ["--num-workers", "-1"],
        ["--num-workers", "many"],
        ["--learning-rate", "0.1"],
        ["--epoch", "3"],  # no abbreviations: a config key must be the option's full name
    ],
)
def test_bad_values_and_unknown_options_are_refused_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(argv)
    assert exit.value.code == 2
    assert argv[0] in capsys.readouterr().err


# A torch that cannot be imported, found before the real one: train.py must answer without it.
NO_TORCH = 'raise ImportError("train.py imported torch before answering")\n'


@pytest.mark.parametrize(
    ("argv", "status", "expected"), [(["--help"], 0, "--epochs"), (["--epoch", "3"], 2, "--epoch")]
)
def test_help_and_bad_options_are_answered_before_torch_loads(argv, status, expected, tmp_path):
    (tmp_path / "torch.py").write_text(NO_TORCH)
    probe = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, *argv],
        cwd=TRAIN_SCRIPT.parent,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == status, probe.stderr
    assert expected in (probe.stdout if status == 0 else probe.stderr)
    assert "Traceback" not in probe.stderr


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


# A finished run


def test_each_epoch_prints_exactly_the_contract_line(finished_run):
    epoch_lines = [line for line in finished_run.lines if line.startswith("epoch=")]
    assert len(epoch_lines) == 2
    for number, line in enumerate(epoch_lines, start=1):
        match = EPOCH_LINE.fullmatch(line)
        assert match, line
        assert int(match.group(1)) == number


def test_metrics_csv_has_the_contract_header_and_the_printed_values(finished_run):
    with open(finished_run.dir / "output" / "metrics.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == metrics.EPOCH_COLUMNS
    assert rows[0][:3] == ["epoch", "train_loss", "val_loss"]  # then the other metrics
    printed = [
        EPOCH_LINE.fullmatch(line) for line in finished_run.lines if line.startswith("epoch=")
    ]
    assert len(rows) == 1 + len(printed)
    for row, match in zip(rows[1:], printed, strict=True):
        assert row[0] == match.group(1)
        for value, shown in zip(row[1:], match.groups()[1:], strict=True):
            assert f"{float(value):.4f}" == shown


def test_one_epoch_on_the_tiny_set_learns_well_above_chance(finished_run, learned):
    assert learned(finished_run.history[0][metrics.OBJECTIVE])


def test_the_saved_model_rebuilds_from_its_folder_alone_and_scores_as_reported(
    finished_run, synthetic_dataset
):
    model, about = saved_model.load(finished_run.dir / "model")
    options = about["options"]
    assert options["width"] == 16  # the options it was trained with, to rebuild it
    info = data.load(synthetic_dataset, options["val_fraction"], options["seed"]).info
    assert about["data"] == info  # what data.py says of the training part
    dataset = data.load(synthetic_dataset, options["val_fraction"], options["seed"], about["data"])
    with torch.no_grad():
        outputs = torch.cat([model(inputs) for inputs, _ in splits.batches(dataset.val, 500, CPU)])
    scores = metrics.evaluate(outputs, dataset.val.targets, "val")
    assert scores == pytest.approx({name: finished_run.history[-1][name] for name in scores})


def test_a_labelled_test_set_is_scored_once_at_the_end_and_an_unlabelled_one_never(
    finished_run, synthetic_dataset
):
    test = data.load(synthetic_dataset, 0.1, seed=0).test
    test_lines = [line for line in finished_run.lines if line.startswith("test_")]
    reported = finished_run.dir / "output" / "test_metrics.json"
    if test is None or test.targets is None:
        assert test_lines == [] and not reported.exists()
        return
    scores = json.loads(reported.read_text())
    assert test_lines == [" ".join(f"{name}={value:.4f}" for name, value in scores.items())]
    assert list(scores) == [f"test_{metric.name}" for metric in metrics.EVALUATED]


def test_plots_are_png_images(finished_run, plot_names):
    for name in plot_names:
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
    assert checkpoint_files(tmp_path / "checkpoints")
    if epoch == 1:  # no epoch completed: no model
        assert not (tmp_path / "model" / "model.pt").exists()
    else:
        assert saved_model.load(tmp_path / "model")[1]["trained_epochs"] == epoch - 1

    history, lines = train_quietly(config)

    assert any(line.startswith("resuming from") for line in lines)
    assert history == finished_run.history
    assert_same_weights(weights(tmp_path), weights(finished_run.dir))
    metrics = (tmp_path / "output" / "metrics.csv").read_text()
    assert metrics == (finished_run.dir / "output" / "metrics.csv").read_text()


def test_a_stop_leaves_the_model_of_the_last_completed_epoch_also_after_a_resume(
    synthetic_dataset, tmp_path, train_argv, stop_training_at
):
    config = build_parser().parse_args(train_argv(synthetic_dataset, tmp_path, "--epochs", "3"))
    stop_training_at(2, 3)
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(config)
    kept = weights(tmp_path)
    (saved_file,) = checkpoint_files(tmp_path / "checkpoints")
    saved = checkpoint.read(saved_file)
    assert saved["run"]["step"] > 0  # stopped mid-epoch: the model had moved on since epoch 1
    assert not all(torch.equal(kept[name], saved["model"][name]) for name in kept)
    assert saved_model.load(tmp_path / "model")[1]["trained_epochs"] == 1
    (tmp_path / "model" / "model.pt").unlink()  # a new job's model folder starts empty

    stop_training_at(1, 8)  # in the resumed run's first epoch, still epoch 2, a few steps on
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(config)

    assert_same_weights(weights(tmp_path), kept)  # epoch 1's weights, from the checkpoint
    assert saved_model.load(tmp_path / "model")[1]["trained_epochs"] == 1


def test_a_checkpoint_of_other_model_code_is_set_aside_not_resumed(
    synthetic_dataset, tmp_path, train_argv, stop_training_at, monkeypatch
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--train-size", "500")
    stop_training_at(2, 1)
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(build_parser().parse_args(argv))
    changed = tmp_path / "model.py"  # src/model.py with one more line: other code
    changed.write_text(Path(train.model_code.__file__).read_text() + "# changed\n")
    monkeypatch.setattr(train.model_code, "__file__", str(changed))

    history, lines = train_quietly(build_parser().parse_args(argv))

    assert any(line.startswith("starting afresh") and "of other code;" in line for line in lines)
    assert [row["epoch"] for row in history] == [1, 2]


def test_checkpoint_of_other_hyperparameters_is_set_aside_and_its_own_command_still_resumes(
    synthetic_dataset, tmp_path, train_argv, stop_training_at
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--train-size", "500")
    stop_training_at(2, 1)
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(build_parser().parse_args(argv))

    history, lines = train_quietly(build_parser().parse_args([*argv, "--lr", "0.02"]))
    assert any(line.startswith("starting afresh") and "of other lr;" in line for line in lines)
    assert [row["epoch"] for row in history] == [1, 2]
    assert len(checkpoint_files(tmp_path / "checkpoints")) == 2  # each run's own, untouched

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
    assert any(line.startswith("starting afresh") for line in lines) == (not resumes)


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


def test_a_run_of_other_options_keeps_the_earlier_model_beside_its_own(
    synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--train-size", "500")
    train_quietly(build_parser().parse_args(argv))
    earlier = weights(tmp_path)

    _, lines = train_quietly(build_parser().parse_args([*argv, "--seed", "7"]))

    (kept,) = (tmp_path / "model").glob("earlier-*")
    assert f"kept the earlier model there, trained with other options, in {kept}" in lines
    assert_same_weights(torch.load(kept / "model.pt", weights_only=True), earlier)
    assert json.loads((kept / "model.json").read_text())["options"]["seed"] != 7
    assert json.loads((tmp_path / "model" / "model.json").read_text())["options"]["seed"] == 7


def stopped_in_epoch_1(command, cwd):
    """Run a training command, SIGTERM it at its first progress line: the CompletedProcess."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    for line in process.stdout:
        if line.startswith("epoch 1 step"):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143_and_a_rerun_finishes_like_an_uninterrupted_run(
    finished_run, synthetic_dataset, tmp_path, train_argv
):
    # A progress line after every step, so the signal lands early in the first epoch.
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--log-interval", "1e-9")
    command = [sys.executable, str(TRAIN_SCRIPT), *argv]
    stopped = stopped_in_epoch_1(command, tmp_path)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert stopped.stderr.strip().endswith("run again to resume")
    assert "Traceback" not in stopped.stderr
    assert checkpoint_files(tmp_path / "checkpoints")
    assert not (tmp_path / "model" / "model.pt").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stdout
    assert_same_weights(weights(tmp_path), weights(finished_run.dir))


# train.py that gets one more SIGTERM after its stop has been saved, as torchrun sends every
# process once another one has exited.
SIGTERM_AGAIN_WHILE_STOPPING = """
import os, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
sys.argv = sys.argv[1:]
import distributed
real_finish = distributed.cleanup
def finish(processes):
    os.kill(os.getpid(), signal.SIGTERM)
    real_finish(processes)
distributed.cleanup = finish
import train
distributed.exit_after(train.main)  # as train.py's __main__
"""


def test_a_second_sigterm_while_stopping_still_lets_the_run_say_where_it_stopped(
    synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--log-interval", "1e-9")
    command = [sys.executable, "-c", SIGTERM_AGAIN_WHILE_STOPPING, str(TRAIN_SCRIPT), *argv]
    stopped = stopped_in_epoch_1(command, tmp_path)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert stopped.stderr.strip().endswith("run again to resume")


# train.py, whose checkpoint.save kills the process (SIGKILL: no handler runs) right after
# saving epoch 2, step 5: a host lost without warning, at a known point.
KILLED_AFTER_A_SAVE = """
import os, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
sys.argv = sys.argv[1:]
import checkpoint
real_save = checkpoint.save
def save(folder, state):
    real_save(folder, state)
    if (state["run"]["epoch"], state["run"]["step"]) == (1, 5):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save
import distributed, train
distributed.exit_after(train.main)  # as train.py's __main__
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
def test_runs_as_a_sagemaker_job_starts_it_from_any_directory(
    synthetic_dataset, tmp_path, plot_names
):
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
    assert checkpoint_files(opt_ml / "checkpoints")
    outputs = {path.name for path in (opt_ml / "output" / "data").iterdir()}
    assert {"metrics.csv", *plot_names} <= outputs
    assert list(elsewhere.iterdir()) == []


def test_cli_exits_1_with_one_line_on_stderr_when_the_data_is_missing(tmp_path, train_argv):
    done = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *train_argv(tmp_path / "none", tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=job_environment(SM_OUTPUT_DIR=tmp_path / "opt_ml_output"),
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "prepare_dataset.py" in line
    # In a job the same line is the failure file, which SageMaker shows as the FailureReason.
    failure = (tmp_path / "opt_ml_output" / "failure").read_text()
    assert f"error: {failure.strip()}" == line


# train.py, with a training step that never finishes: the given step of the run blocks forever.
STALLED_TRAIN = """
import runpy, sys, threading
sys.path.insert(0, {source!r})
import metrics
real_loss, steps = metrics.loss, []
def loss_that_never_returns(*args):
    steps.append(args)
    if len(steps) == {stalled_step}:
        threading.Event().wait()
    return real_loss(*args)
metrics.loss = loss_that_never_returns
sys.argv[0] = {script!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def test_a_stalled_step_ends_the_run_with_every_stack_and_the_failure_file_saying_so(
    synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--train-size", "500")
    argv += ["--batch-size", "100", "--stall-timeout", "10"]  # 5 steps an epoch; each takes ms
    stalled = STALLED_TRAIN.format(
        source=str(TRAIN_SCRIPT.parent), script=str(TRAIN_SCRIPT), stalled_step=7
    )

    done = subprocess.run(
        [sys.executable, "-c", stalled, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=job_environment(SM_OUTPUT_DIR=tmp_path / "opt_ml_output"),
    )

    assert done.returncode == watchdog.EXIT_STALLED, done.stdout + done.stderr
    assert "epoch=1 " in done.stdout  # epoch 2's second step is the one that stalls
    # faulthandler's dump: the main thread, where it hangs, and the watchdog's own thread.
    assert "in loss_that_never_returns" in done.stderr
    assert re.search(r"Current thread .* \(most recent call first\)", done.stderr)
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: stalled: no training step finished in 10 s (")
    failure = (tmp_path / "opt_ml_output" / "failure").read_text()
    assert failure.startswith("stalled: no training step finished in 10 s")
    assert checkpoint_files(tmp_path / "checkpoints")  # epoch 1's: a relaunch resumes from it
    found = job_results.triage({"status": "Failed", "failure_reason": failure}, [])
    assert found["cause"].startswith("the run hung") and "(now 10 s)" in found["fix"]


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
    assert checkpoint_files(tmp_path / "checkpoints")  # rerunning resumes


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
