"""Experiment tracking with MLflow: params, per-epoch metrics, plots and the model.

Where runs go:
- MLFLOW_TRACKING_URI when set: any MLflow URI, or the ARN of a SageMaker managed MLflow
  tracking server (run_job.py passes it to jobs; the sagemaker-mlflow plugin signs requests);
- else, on this machine, the project's SQLite store result/mlflow.db
  (browse it with: mlflow ui --backend-store-uri sqlite:///result/mlflow.db);
- else (a job without a tracking server) nowhere: a store inside the container would be lost.
Experiment: MLFLOW_EXPERIMENT_NAME, else the project's experiment name. Run name: MLFLOW_RUN_NAME.

Tracking never stops training: the first failure (server unreachable, bad credentials, ...)
prints one warning and turns tracking off for the rest of the run.
"""

import os
import sys
from pathlib import Path

from checkpoint import Interrupted
from options import PROJECT_ROOT

EXPERIMENT_NAME = {{ cookiecutter.experiment_name | tojson }}
LOCAL_STORE = f"sqlite:///{PROJECT_ROOT / 'result' / 'mlflow.db'}"


def tracking_uri():
    """Where to log, or None to skip tracking (a job with no tracking server)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if "SM_MODEL_DIR" in os.environ:
        return None
    return LOCAL_STORE


def sqlite_folder(uri):
    """The folder of a sqlite:///path store, else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]).resolve().parent if uri.startswith(prefix) else None


class Tracker:
    """One MLflow run; a context manager that ends the run with the right status."""

    def __init__(self, config):
        self.config = config
        self.mlflow = None
        self.uri = tracking_uri()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            status = "FINISHED"
        elif issubclass(kind, Interrupted):  # a resumed run continues this MLflow run
            status = "KILLED"
        else:
            status = "FAILED"
        self._safely(lambda mlflow: mlflow.end_run(status=status))

    def _safely(self, action):
        """Run action(mlflow); on any error warn once and stop tracking."""
        if self.mlflow is None:
            return None
        try:
            return action(self.mlflow)
        except Exception as error:  # tracking must never kill a paid job
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            print(
                f"warning: experiment tracking failed ({type(error).__name__}: {message[:300]}); "
                "training goes on without it",
                file=sys.stderr,
            )
            self.mlflow = None
            return None

    def start(self, run_id=None):
        """Start (or, after a resume, continue) the MLflow run; return its id."""
        if self.uri is None:
            print("tracking: off (no MLFLOW_TRACKING_URI in this job)")
            return run_id
        import mlflow

        self.mlflow = mlflow

        def start_run(mlflow):
            mlflow.set_tracking_uri(self.uri)
            if run_id is None:
                name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_NAME
                store = sqlite_folder(self.uri)
                if store and mlflow.get_experiment_by_name(name) is None:
                    # Files beside the database, not in ./mlruns of whatever the cwd is.
                    mlflow.create_experiment(name, (store / "mlartifacts").as_uri())
                mlflow.set_experiment(name)
                run = mlflow.start_run(run_name=os.environ.get("MLFLOW_RUN_NAME"))
                params = {key: str(value) for key, value in vars(self.config).items()}
                mlflow.log_params(params)
            else:
                run = mlflow.start_run(run_id=run_id)
            print(f"tracking: MLflow run {run.info.run_id} at {self.uri}")
            return run.info.run_id

        return self._safely(start_run) or run_id

    def log_epoch(self, row):
        metrics = {key: value for key, value in row.items() if key != "epoch"}
        self._safely(lambda mlflow: mlflow.log_metrics(metrics, step=row["epoch"]))

    def finish(self, figures, model_file):
        """Log the plots, and the model as model.pt (weights) + model.py (the network's code).

        Weights and code, not a pickled module: loading runs no stored code, and it takes
        milliseconds (mlflow.pytorch.log_model pickles, or traces the model for seconds).
        """

        def log_outputs(mlflow):
            for figure in figures:
                mlflow.log_artifact(str(figure), artifact_path="plots")
            mlflow.log_artifact(str(model_file), artifact_path="model")
            mlflow.log_artifact(str(Path(__file__).with_name("model.py")), artifact_path="model")

        self._safely(log_outputs)
