"""Experiment tracking with MLflow: params, per-epoch metrics, plots and the model.

MLflow runs in a process of its own (`python tracking.py`, fed JSON lines on stdin): its import
and a store's first use take seconds, which then overlap with training instead of adding to it;
its memory is not the trainer's; and a slow or unreachable server can never block a training step.
The first failure prints one warning and turns tracking off: tracking never stops a paid job.

Where runs go:
- MLFLOW_TRACKING_URI when set: any MLflow URI, or the ARN of a SageMaker managed MLflow
  tracking server (run_job.py passes it to jobs; the sagemaker-mlflow plugin signs requests);
- else, on this machine, the project's SQLite store result/mlflow.db
  (browse it with: mlflow ui --backend-store-uri sqlite:///result/mlflow.db);
- else (a job without a tracking server) nowhere: a store inside the container would be lost.
Experiment: MLFLOW_EXPERIMENT_NAME, else the project's experiment name. Run name: MLFLOW_RUN_NAME.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from options import PROJECT_ROOT

EXPERIMENT_NAME = {{cookiecutter.experiment_name | tojson}}
SQLITE_PREFIX = "sqlite:///"
LOCAL_STORE = f"{SQLITE_PREFIX}{PROJECT_ROOT / 'result' / 'mlflow.db'}"
RUN_KEY_TAG = "train_run_key"  # finds the run again when an interrupted training resumes


def tracking_uri():
    """Where to log, or None to skip tracking (a job with no tracking server)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if "SM_MODEL_DIR" in os.environ:
        return None
    return LOCAL_STORE


class Tracker:
    """The trainer's side: starts the MLflow process and sends it what to log.

    A context manager: leaving it ends the MLflow run as FINISHED, or as KILLED when training
    was interrupted (a resumed training continues that run), or FAILED.
    """

    # How long the trainer waits for the last uploads: a stuck server costs a bounded wait, not
    # the job; a stopped job has SageMaker's 120-second grace period, and its checkpoint is saved.
    FINISH_SECONDS = 120
    STOPPED_SECONDS = 60

    def __init__(self, config, state):
        """state: the run's checkpointed state, where the tracking run's key is kept so that a
        resumed training continues the same run."""
        self.config, self.state = config, state
        self.process = None

    def __enter__(self):
        self.state["tracking_run_key"] = self.start_run(self.state.get("tracking_run_key"))
        return self

    def start_run(self, run_key=None):
        """Start logging a run (or continue the one of `run_key`); return the run's key."""
        uri = tracking_uri()
        if uri is None:
            print("tracking: off (no MLFLOW_TRACKING_URI in this job)")
            return run_key
        run_key = run_key or uuid.uuid4().hex
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, text=True
        )
        self.send(
            uri=uri,
            experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME,
            run_name=os.environ.get("MLFLOW_RUN_NAME"),
            run_key=run_key,
            params={key: str(value) for key, value in vars(self.config).items()},
        )
        return run_key

    def send(self, **event):
        if self.process is None:
            return
        try:
            self.process.stdin.write(json.dumps(event) + "\n")
            self.process.stdin.flush()
        except OSError:  # the process is gone; it said why
            self.process = None

    def log_epoch(self, row):
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        self.send(metrics=metrics, step=row["epoch"])

    def log_results(self, figures, model_files, test_metrics=None):
        """Log the plots, the test set's metrics, and the model as model.pt (weights),
        model.json (what rebuilding it takes) and model.py (the network's code): weights and
        code load without running stored code, unlike a pickled module."""
        if test_metrics:
            self.send(metrics=test_metrics, step=self.config.epochs)
        for figure in figures:
            self.send(artifact=str(figure), folder="plots")
        for file in (*model_files, Path(__file__).with_name("model.py")):
            self.send(artifact=str(file), folder="model")

    def __exit__(self, kind, error, traceback):
        if kind is None:
            status = "FINISHED"
        elif hasattr(error, "exit_code"):  # checkpoint.Interrupted (no torch import here)
            status = "KILLED"
        else:
            status = "FAILED"
        self.send(end=status)
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(
                    timeout=self.FINISH_SECONDS if kind is None else self.STOPPED_SECONDS
                )
            except subprocess.TimeoutExpired:
                print("warning: experiment tracking did not finish; stopped it", file=sys.stderr)
                self.process.kill()


def log_events(lines):
    """The MLflow process: log each JSON event; after a failure, warn once and drain."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO chatter in the job log
    status = "KILLED"  # if the trainer vanishes without saying how the run ended
    try:
        for line in lines:
            event = json.loads(line)
            if "uri" in event:
                start_run(mlflow, event)
            elif "metrics" in event:
                mlflow.log_metrics(event["metrics"], step=event["step"])
            elif "artifact" in event:
                mlflow.log_artifact(event["artifact"], artifact_path=event["folder"])
            elif "end" in event:  # the last one: not EOF, as the trainer's forks (DataLoader
                status = event["end"]  # workers) may hold this pipe open after it closed it
                break
        if mlflow.active_run():
            mlflow.end_run(status=status)
    except Exception as error:  # tracking must never stop training
        reason = " ".join(str(error).split())[:300]
        print(
            f"warning: experiment tracking failed ({type(error).__name__}: {reason}); "
            "training goes on without it",
            file=sys.stderr,
        )
        for line in lines:  # read on, so that the trainer can write until it is done
            if line.startswith('{"end"'):
                break


def start_run(mlflow, event):
    store_file = sqlite_file(event["uri"])
    store = store_file.parent if store_file else None
    if store_file:
        commit_without_waiting_for_the_disk()
        usable_local_store(store_file)
    mlflow.set_tracking_uri(event["uri"])
    name = event["experiment"]
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # A local store keeps its files beside the database, not in ./mlruns of the cwd.
        location = (store / "mlartifacts").as_uri() if store else None
        mlflow.create_experiment(name, artifact_location=location)
        experiment = mlflow.get_experiment_by_name(name)
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    earlier = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{RUN_KEY_TAG} = '{event['run_key']}'",
        output_format="list",
    )
    if earlier:  # a resumed training continues its run
        run = mlflow.start_run(run_id=earlier[0].info.run_id)
    else:
        run = mlflow.start_run(run_name=event["run_name"], tags={RUN_KEY_TAG: event["run_key"]})
        mlflow.log_params(event["params"])
    print(f"tracking: MLflow run {run.info.run_id} in experiment {name} at {event['uri']}")


def usable_local_store(path):
    """Make sure the SQLite store at `path` opens: create a new one whole, set a broken one aside.

    A store is created under a temporary name and linked into place only once all of MLflow's
    schema migrations ran, so a run killed meanwhile never leaves a half-migrated store. A store
    that does not open (e.g. migrated halfway by an older run) is renamed, never deleted.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts = (path.parent / "mlartifacts").as_uri()
    if path.is_file():
        uri = f"{SQLITE_PREFIX}{path}"
        try:
            SqlAlchemyStore(uri, artifacts).engine.dispose()
            return
        except Exception as error:
            # MLflow keeps one engine per URI; drop its connections to the file set aside.
            engines = getattr(SqlAlchemyStore, "_engine_map", {})
            if uri in engines:
                engines.pop(uri).dispose()
            kept = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, kept)
            reason = " ".join(str(error).split())[:160]
            print(
                f"tracking: the store {path} does not open ({reason}); moved it to {kept.name} "
                "and started a new one",
                file=sys.stderr,
            )
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        SqlAlchemyStore(f"{SQLITE_PREFIX}{partial}", artifacts).engine.dispose()
        os.link(partial, path)  # fails if another run created the store meanwhile: keep that one
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)


def commit_without_waiting_for_the_disk():
    """SQLite in write-ahead-log mode, syncing at checkpoints only (safe from corruption).

    A new store runs dozens of schema migrations, each a commit: waiting for the disk at every
    one of them took seconds on a busy disk. A store being created (a .partial file, discarded
    if anything goes wrong) keeps its journal in memory, so the finished file is self-contained.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def set_pragmas(connection, record):
        if type(connection).__module__ == "sqlite3":
            cursor = connection.cursor()
            (_, _, file), *_ = cursor.execute("PRAGMA database_list").fetchall()
            creating = ".partial-" in Path(file or "").name
            cursor.execute(f"PRAGMA journal_mode={'MEMORY' if creating else 'WAL'}")
            cursor.execute(f"PRAGMA synchronous={'OFF' if creating else 'NORMAL'}")
            cursor.close()


def sqlite_file(uri):
    """The database file of a sqlite:///path store, else None."""
    return Path(uri[len(SQLITE_PREFIX) :]).resolve() if uri.startswith(SQLITE_PREFIX) else None


if __name__ == "__main__":
    # Ctrl-C and SIGTERM are for the trainer, which then ends the run and closes stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "nice"):  # background work: yield the CPU to the training threads
        os.nice(10)
    log_events(sys.stdin)
