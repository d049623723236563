"""The machinery knows no problem: a default render given docs/data.md's "Make it yours" data.py
(colour images read from a folder, 20 classes, an unlabelled test folder) in place of the MNIST
one, and nothing else changed, trains, resumes after SIGTERM to the same weights, trains with two
torchrun processes, runs as a --local job and writes a submission.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from test_ci_and_docs import Readme, render

SECTION = "## Make it yours"
CLASSES = 20


def environment():
    """No AWS or SageMaker settings of the caller; dummy credentials; no SDK telemetry; one CPU
    thread, so that the runs compared below sum in the same order whatever the load when each
    started (train.py otherwise takes a thread per free core)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_", "MLFLOW_"))}
    dummy = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return {**clean, **dummy, "SAGEMAKER_TELEMETRY_OPT_OUT": "true", "OMP_NUM_THREADS": "1"}


def run(project, *command):
    return subprocess.run(
        [sys.executable, *map(str, command)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment(),
    )


@pytest.fixture(scope="module")
def own_problem(tmp_path_factory):
    """A default render whose src/data.py is docs/data.md's, with its stand-in dataset."""
    project = render(tmp_path_factory.mktemp("own"))
    (section,) = [s for s in Readme(project / "docs" / "data.md").sections if s.heading == SECTION]
    (data_py,) = [code for code in section.python if "def load(" in code]
    (stand_in,) = [code for code in section.python if "def load(" not in code]
    (project / "src" / "data.py").write_text(data_py)
    done = run(project, "-c", stand_in)
    assert done.returncode == 0, done.stderr
    return project


def train_argv(run_dir, *extra):
    folders = {"model-dir": "model", "output-data-dir": "output", "checkpoint-dir": "checkpoints"}
    argv = [word for key, name in folders.items() for word in (f"--{key}", run_dir / name)]
    return ["src/train.py", "--epochs", "2", "--tracking", "false", *argv, *extra]


def weights(run_dir):
    return torch.load(run_dir / "model" / "model.pt", weights_only=True)


@pytest.mark.slow
def test_the_readme_data_py_alone_brings_a_new_problem_through_training_and_prediction(
    own_problem, tmp_path
):
    done = run(own_problem, *train_argv(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "train_examples=720 val_examples=80 test_examples=200" in done.stdout  # 10% held out
    with open(tmp_path / "output" / "metrics.csv", newline="") as file:
        last = list(csv.DictReader(file))[-1]
    assert float(last["val_accuracy"]) > 3 / CLASSES  # well above chance

    out_dir = tmp_path / "predictions"
    predicted = run(
        own_problem, "scripts/predict.py", "--model", tmp_path / "model", "--out-dir", out_dir
    )
    assert predicted.returncode == 0, predicted.stderr
    with open(out_dir / "submission.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    test_ids = sorted(path.stem for path in (own_problem / "dataset" / "test").glob("*.png"))
    assert [row["id"] for row in rows] == test_ids
    assert {row["label"] for row in rows} <= {f"class-{k:02d}" for k in range(CLASSES)}
    assert (out_dir / "predictions.png").is_file()

    # Stopped by SIGTERM at the first progress line, then resumed: the same weights.
    stopped_dir = tmp_path / "stopped"
    argv = train_argv(stopped_dir, "--log-interval", "1e-9")
    process = subprocess.Popen(
        [sys.executable, *map(str, argv)],
        cwd=own_problem,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    for line in process.stdout:
        if line.startswith("epoch 1 step"):
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    resumed = run(own_problem, *argv)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr
    first, second = weights(tmp_path), weights(stopped_dir)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.slow
def test_the_new_problem_trains_with_two_torchrun_processes(own_problem, tmp_path):
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = run(own_problem, *torchrun, *train_argv(tmp_path, "--epochs", "1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processes=2, each with train_examples=360" in done.stdout
    assert (tmp_path / "model" / "model.json").is_file()


@pytest.mark.slow
def test_the_new_problem_runs_as_a_local_job(own_problem, tmp_path):
    config = tmp_path / "own.yaml"
    config.write_text("epochs: 1\ntracking: false\n")
    results = tmp_path / "results"
    done = run(
        own_problem, "scripts/run_job.py", "--local", "--config", config, "--out-dir", results
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (exp_file,) = results.glob("*/exp.json")
    assert json.loads(exp_file.read_text())["status"] == "Completed"
    about = json.loads((exp_file.parent / "model" / "model.json").read_text())
    assert len(about["data"]["classes"]) == CLASSES and about["data"]["input_shape"] == [3, 32, 32]
