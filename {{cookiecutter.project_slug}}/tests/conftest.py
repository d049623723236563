"""Shared fixtures: a tiny synthetic dataset; launcher/, src/ and scripts/ importable from tests.

Tests that take more than a few seconds carry @pytest.mark.slow (they run in CI all the same;
`python -m pytest -m "not slow"` skips them while you iterate).
"""

import os
import signal
import sys
from pathlib import Path

import pytest

# One CPU thread per test process, set before torch loads: runs that a test compares must sum in
# the same order whatever the load when each started (train.py otherwise takes a thread per free
# core, hardware.use_free_cores), and pytest-xdist already runs one process per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project root (launcher/), src/ as train.py imports it, scripts/ to call their main().
for folder in (PROJECT_ROOT, PROJECT_ROOT / "src", PROJECT_ROOT / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import prepare_dataset  # noqa: E402

TINY_TRAIN, TINY_TEST = 2000, 500  # enough for one epoch to learn, in a few seconds


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (runs in CI too)")


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A tiny synthetic dataset of this project's kind (2000 labelled, 500 test examples), written
    by scripts/prepare_dataset.py in the layout src/data.py reads."""
    folder = tmp_path_factory.mktemp("dataset")
    prepare_dataset.prepare_synthetic(folder, TINY_TRAIN, TINY_TEST, seed=0)
    return folder


@pytest.fixture(scope="session")
def learned(synthetic_dataset):
    """learned(value): whether a value of src/metrics.py's OBJECTIVE on the tiny set shows that
    the model learned, whatever the problem: it went at least 60% of the way from guessing's to a
    perfect model's 1 (accuracy 0.64 with 10 classes, 0.8 with 2; R² 0.6). One epoch on the tiny
    set reaches about 0.72 on the hardest example, synthetic handwriting."""
    import data
    import metrics

    info = data.load(synthetic_dataset, 0.1, seed=0).info
    # The objective of a model that learnt nothing (a perfect one scores 1).
    guessing = 1 / len(info["classes"]) if metrics.PROBLEM == "classification" else 0.0
    return lambda value: value >= guessing + 0.6 * (1 - guessing)


@pytest.fixture(scope="session")
def plot_names(synthetic_dataset):
    """The pictures train.py draws: the curves, and with classes the confusion matrix."""
    import data

    classified = "classes" in data.load(synthetic_dataset, 0.1, seed=0).info
    return ["curves.png", *(["confusion_matrix.png"] if classified else [])]


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_as_in_a_terminal():
    """Ctrl-C tests send SIGINT: give this process, and the processes it starts, the default
    handling, also when the suite runs as a background job (`nohup nox &`), where it starts ignored.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def no_job_environment(monkeypatch):
    """Tests start outside any job: no SM_* variables from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("SM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def train_argv():
    """train_argv(data_dir, run_dir, *options): train.py's argv, writing only under run_dir.

    Tracking stays off unless the options turn it on (test_tracking.py does).
    """
    import options

    def build(data_dir, run_dir, *extra):
        argv = [
            *("--data-dir", data_dir),
            *("--model-dir", run_dir / "model"),
            *("--output-data-dir", run_dir / "output"),
            *("--checkpoint-dir", run_dir / "checkpoints"),
            *("--log-interval", "0"),
        ]
        if options.HAS_TRACKING and "--tracking" not in extra:
            argv += ["--tracking", "false"]
        return [str(word) for word in [*argv, *extra]]

    return build


@pytest.fixture
def stop_training_at(monkeypatch):
    """stop_training_at(epoch, batch): the next train() in this process gets SIGTERM, as from
    SageMaker, just before that batch (0-based) of that epoch (1-based) of its training."""

    def arm(epoch, batch):
        import splits

        real_call = splits.Batches.__call__
        epochs_started = []

        def call(self, order=None, start=0, seed=None):
            training = order is not None  # evaluation takes the examples in stored order
            epochs_started.extend([True] if training else [])
            for index, item in enumerate(real_call(self, order, start, seed), start):
                if training and len(epochs_started) == epoch and index == batch:
                    monkeypatch.setattr(splits.Batches, "__call__", real_call)  # once is enough
                    os.kill(os.getpid(), signal.SIGTERM)
                yield item

        monkeypatch.setattr(splits.Batches, "__call__", call)

    return arm


# --- AWS stand-ins for the launcher's tests (tests/aws_fakes.py, owned with scripts/run_job.py):
# moto's server on a free port, and SageMaker played on top of it.
pytest_plugins = ["aws_fakes"]
