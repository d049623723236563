"""This project's checks: `nox -s tests`, `nox -s smoke`, or `nox` for both.

Both run in the current environment (python=False), the one requirements-dev.txt was
installed into, so torch is never installed again per session.
"""

import csv
import sys
import tempfile
from pathlib import Path

import nox

PROJECT_ROOT = Path(__file__).resolve().parent
nox.options.sessions = ["tests", "smoke"]
# What src/metrics.py's objective must reach after one epoch on the small set: accuracy or R²,
# where 1 is perfect (a minimised objective, e.g. a loss, needs another check here). Far above
# guessing (0.1 for ten classes, R² 0) for every example problem; the hardest, synthetic
# handwriting, reaches about 0.72, the others above 0.9.
SMOKE_OBJECTIVE = 0.6


def run_python(session, *arguments, **options):
    """Run this interpreter (the environment nox runs in) with `arguments`."""
    session.run(sys.executable, *map(str, arguments), **options)


@nox.session(python=False)
def tests(session):
    """The test suite, on every core (pytest-xdist); extra arguments go to pytest
    (e.g. nox -s tests -- -m "not slow", or -n 0 for one process)."""
    run_python(session, "-m", "pytest", "-n", "auto", *session.posargs)


def train_modules():
    """src/metrics.py and src/options.py (torch-free), imported as train.py imports them: the
    objective and the kind of problem; whether the project tracks experiments."""
    sys.path.insert(0, str(PROJECT_ROOT / "src"))
    import metrics
    import options

    return metrics, options


@nox.session(python=False)
def smoke(session):
    """Train one epoch on a small synthetic set and predict its test set; check that it learnt
    (src/metrics.py's objective) and the outputs."""
    metrics, options = train_modules()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data, model, output = scratch / "data", scratch / "model", scratch / "output"
        prepare = [PROJECT_ROOT / "scripts" / "prepare_dataset.py", "synthetic", "--out", data]
        run_python(session, *prepare, "--train-size", "2000", "--test-size", "500")
        run_python(
            session,
            *(PROJECT_ROOT / "src" / "train.py", "--epochs", "1", "--data-dir", data),
            *("--model-dir", model, "--output-data-dir", output),
            *("--checkpoint-dir", scratch / "checkpoints"),
            # Smoke runs stay out of the project's experiment tracking, if it has some.
            *(["--tracking", "false"] if options.HAS_TRACKING else []),
        )
        predict = [PROJECT_ROOT / "scripts" / "predict.py", "--model", model, "--data-dir", data]
        run_python(session, *predict, "--out-dir", scratch / "predictions")
        expected = [model / "model.pt", model / "model.json", output / "curves.png"]
        expected += [output / "metrics.csv", scratch / "predictions" / "submission.csv"]
        if metrics.PROBLEM == "classification":
            expected.append(output / "confusion_matrix.png")
        missing = [str(path) for path in expected if not path.is_file()]
        if missing:
            session.error(f"train.py or predict.py did not write {', '.join(missing)}")
        with open(output / "metrics.csv", newline="") as file:
            reached = float(list(csv.DictReader(file))[-1][metrics.OBJECTIVE])
        result = f"{metrics.OBJECTIVE} {reached:.3f}"
        if reached < SMOKE_OBJECTIVE:
            session.error(f"{result} after one epoch, expected at least {SMOKE_OBJECTIVE}")
        session.log(f"smoke passed: {result}, outputs in place")
