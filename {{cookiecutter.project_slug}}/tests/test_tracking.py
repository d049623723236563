"""src/tracking.py: MLflow runs in a local store, the store's defaults, resumed runs, and
tracking failures that never stop training. MLflow runs in a process of its own, which
train() waits for, so the store is complete when train() returns."""

import contextlib
import io
import json
import multiprocessing
import os
import socket
import sqlite3
import time

import pytest
from mlflow.tracking import MlflowClient

import checkpoint
import metrics
import tracking
import train
from options import PROJECT_ROOT, build_parser


@pytest.fixture(autouse=True)
def no_tracking_environment(monkeypatch):
    """No MLFLOW_* variables from the caller's shell; each test sets what it needs."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)


def train_quietly(config):
    with contextlib.redirect_stdout(io.StringIO()):
        return train.train(config)


@pytest.fixture
def local_store(tmp_path, monkeypatch):
    """A fresh SQLite store for the test, and a cwd where stray ./mlruns would show."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def only_run(uri, experiment_name):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def test_a_run_logs_params_metrics_plots_and_the_model(
    local_store, synthetic_dataset, tmp_path, train_argv, monkeypatch, plot_names
):
    monkeypatch.setenv("MLFLOW_RUN_NAME", "tiny-run")
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--tracking", "true")

    history = train_quietly(build_parser().parse_args(argv))

    client, run = only_run(local_store, tracking.EXPERIMENT_NAME)
    assert (run.info.status, run.info.run_name) == ("FINISHED", "tiny-run")
    assert run.data.params["epochs"] == "2" and run.data.params["lr"] == "0.01"
    for metric in metrics.EPOCH_COLUMNS[1:]:  # every metric of the epoch line
        logged = client.get_metric_history(run.info.run_id, metric)
        assert [(m.step, m.value) for m in logged] == [(r["epoch"], r[metric]) for r in history]
    reported = tmp_path / "output" / "test_metrics.json"  # when the test set has labels
    tested = json.loads(reported.read_text()) if reported.exists() else {}
    for metric, value in tested.items():  # once, at the last epoch
        logged = client.get_metric_history(run.info.run_id, metric)
        assert [(m.step, m.value) for m in logged] == [(2, value)]
    artifacts = {
        item.path
        for folder in ("plots", "model")
        for item in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {
        *(f"plots/{name}" for name in plot_names),
        "model/model.pt",
        "model/model.json",
        "model/model.py",
    }
    assert (tmp_path / "store" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    assert sorted(path.name for path in (tmp_path / "store").glob("mlflow.db*")) in (
        ["mlflow.db"],
        ["mlflow.db", "mlflow.db-shm", "mlflow.db-wal"],
    )  # the store was created whole: no partial copy left beside it


def test_the_default_store_is_in_the_project_and_a_job_without_a_server_does_not_track(
    monkeypatch,
):
    assert tracking.tracking_uri() == f"sqlite:///{PROJECT_ROOT / 'result' / 'mlflow.db'}"
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    assert tracking.tracking_uri() is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri() == "http://tracking.example:5000"


def test_an_unreachable_server_warns_once_and_training_finishes(
    synthetic_dataset, tmp_path, train_argv, monkeypatch, capfd
):
    with socket.socket() as listener:  # a local port that refuses connections once closed
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail in seconds, not minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--tracking", "true")

    history = train.train(build_parser().parse_args(argv))

    assert [row["epoch"] for row in history] == [1, 2]
    assert (tmp_path / "model" / "model.pt").is_file()
    # The warning comes from the tracking process, on the same stderr.
    assert capfd.readouterr().err.count("warning: experiment tracking failed") == 1


def test_a_server_that_never_answers_costs_a_bounded_wait_and_the_model_is_saved(
    synthetic_dataset, tmp_path, train_argv, monkeypatch, capfd
):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600")
        monkeypatch.setattr(tracking.Tracker, "FINISH_SECONDS", 1)
        argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--tracking", "true")

        history = train.train(build_parser().parse_args(argv))

    assert [row["epoch"] for row in history] == [1]
    assert (tmp_path / "model" / "model.pt").is_file()
    assert "warning: experiment tracking did not finish; stopped it" in capfd.readouterr().err


def test_tracking_ends_at_the_runs_last_event_though_a_fork_of_the_trainer_holds_its_pipe(
    local_store, synthetic_dataset, tmp_path, train_argv, monkeypatch, capfd
):
    # DataLoader workers are such forks: they inherit the pipe to the tracking process, and
    # persistent ones outlive the run's last epoch. A bound far above any wait this run needs.
    monkeypatch.setattr(tracking.Tracker, "FINISH_SECONDS", 300)
    forks = []
    log_epoch = tracking.Tracker.log_epoch

    def log_epoch_and_fork(self, row):
        log_epoch(self, row)
        fork = multiprocessing.get_context("fork").Process(target=time.sleep, args=(3600,))
        fork.start()
        forks.append(fork)

    monkeypatch.setattr(tracking.Tracker, "log_epoch", log_epoch_and_fork)
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--tracking", "true")
    try:
        train_quietly(build_parser().parse_args(argv))
        assert forks[0].is_alive()
    finally:
        for fork in forks:
            fork.kill()

    assert "did not finish" not in capfd.readouterr().err
    _, run = only_run(local_store, tracking.EXPERIMENT_NAME)
    assert run.info.status == "FINISHED"


def test_a_resumed_run_continues_the_same_mlflow_run(
    local_store, synthetic_dataset, tmp_path, train_argv, stop_training_at, monkeypatch
):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "resumed-runs")
    # What is tested is the run's continuation, not the wait's bound: wait for the tracking
    # process however slow this machine is (a job's bound is tested below).
    monkeypatch.setattr(tracking.Tracker, "STOPPED_SECONDS", None)
    config = build_parser().parse_args(
        train_argv(synthetic_dataset, tmp_path, "--epochs", "2", "--tracking", "true")
    )
    stop_training_at(2, 3)
    with pytest.raises(checkpoint.Interrupted):
        train_quietly(config)
    _, stopped = only_run(local_store, "resumed-runs")
    assert stopped.info.status == "KILLED"

    train_quietly(config)

    client, run = only_run(local_store, "resumed-runs")
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    logged = client.get_metric_history(run.info.run_id, metrics.OBJECTIVE)
    assert [m.step for m in logged] == [1, 2]


def test_a_store_left_half_migrated_is_set_aside_with_one_line_and_tracking_goes_on(
    local_store, synthetic_dataset, tmp_path, train_argv, capfd
):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = tmp_path / "store" / "mlflow.db"
    SqlAlchemyStore(local_store, (tmp_path / "store").as_uri()).engine.dispose()
    with sqlite3.connect(store) as connection:  # as a run killed between two migrations leaves it
        connection.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--tracking", "true")

    train.train(build_parser().parse_args(argv))

    err = capfd.readouterr().err
    (kept,) = (tmp_path / "store").glob("mlflow.db.broken-*")
    assert f"tracking: the store {store} does not open" in err and kept.name in err
    assert "warning: experiment tracking failed" not in err
    _, run = only_run(local_store, tracking.EXPERIMENT_NAME)
    assert run.info.status == "FINISHED"
    with sqlite3.connect(kept) as connection:  # the old store is kept as it was
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            "451aebb31d03",
        )
