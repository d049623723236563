"""k-fold cross-validation (train.py --folds): every labelled example is predicted once, by the
model that never trained on it; the CV score is the objective over those predictions; a stopped
run resumes at its fold and step; folds trained apart (--fold, as jobs would) make the same CV.
"""

import contextlib
import csv
import io
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch

import checkpoint
import cross_validation
import data
import metrics
import saved_model
import splits
import train
from options import PROJECT_ROOT, build_parser

FOLDS = 3
TRAIN_SCRIPT = PROJECT_ROOT / "src" / "train.py"


def run_folds(argv):
    """train.py's train() on argv (in this process): the lines it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train.train(build_parser().parse_args(argv))
    return printed.getvalue().splitlines()


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def cross_validated(synthetic_dataset, tmp_path_factory, train_argv):
    """--folds 3, one epoch each, uninterrupted: the reference."""
    run_dir = tmp_path_factory.mktemp("folds")
    lines = run_folds(train_argv(synthetic_dataset, run_dir, "--epochs", "1", "--folds", FOLDS))
    return run_dir, lines


def test_every_labelled_example_is_predicted_once_by_the_model_that_never_saw_it(
    cross_validated, synthetic_dataset
):
    run_dir, lines = cross_validated
    rows = read_csv(run_dir / "output" / "oof.csv")
    labelled = data.load(synthetic_dataset, 0.1, seed=0)
    every_id = sorted([*labelled.train.ids, *labelled.val.ids])
    assert sorted(row["id"] for row in rows) == every_id  # each once, none missing
    assert {row["fold"] for row in rows} == {"1", "2", "3"}
    for fold in range(1, FOLDS + 1):
        assert (run_dir / "model" / f"fold-{fold}" / "model.pt").is_file()
        fold_rows = read_csv(run_dir / "output" / f"fold-{fold}" / "oof.csv")
        assert fold_rows == [row for row in rows if row["fold"] == str(fold)]
        # The model of fold i trained on the others: fold i is its validation part, no more.
        fold_data = data.load(synthetic_dataset, splits.Fold(FOLDS, fold), seed=42)
        assert sorted(fold_data.val.ids) == sorted(row["id"] for row in fold_rows)
        assert not set(fold_data.train.ids) & set(fold_data.val.ids)

    result = json.loads((run_dir / "output" / "cv.json").read_text())
    name = f"cv_{cross_validation.CV_METRIC}"
    assert result == {
        name: pytest.approx(cross_validation.score(rows)),
        "folds": 3,
        "examples": len(rows),
    }
    assert lines[-1].startswith(f"{name}={result[name]:.4f} folds=3")


def test_cv_score_is_the_objective_of_the_out_of_fold_predictions(cross_validated):
    run_dir, _ = cross_validated
    rows = read_csv(run_dir / "output" / "oof.csv")
    value = cross_validation.score(rows)
    if "prediction" in rows[0]:  # a number: R² from the values themselves
        predicted = torch.tensor([float(row["prediction"]) for row in rows]).unsqueeze(1)
        expected = metrics.r2(predicted, torch.tensor([float(row["target"]) for row in rows]))
    else:  # the share of rows whose most probable class is the target
        classes = [name for name in rows[0] if name not in ("id", "fold", "target")]
        best = [max(classes, key=lambda name, row=row: float(row[name])) for row in rows]
        expected = sum(b == row["target"] for b, row in zip(best, rows, strict=True)) / len(rows)
    assert value == pytest.approx(expected)


def test_folds_are_stratified_and_the_same_for_a_seed():
    targets = torch.tensor([0] * 30 + [1] * 9 + [2] * 3)
    numbers = splits.fold_numbers(targets, len(targets), 3, torch.Generator().manual_seed(7))
    for label, each in [(0, 10), (1, 3), (2, 1)]:  # every fold gets a third of every class
        assert Counter(numbers[targets == label].tolist()) == {0: each, 1: each, 2: each}
    again = splits.fold_numbers(targets, len(targets), 3, torch.Generator().manual_seed(7))
    assert torch.equal(numbers, again)
    values = torch.linspace(0, 1, 10)  # numbers to predict: plain folds, sizes 4, 3, 3
    plain = splits.fold_numbers(values, 10, 3, torch.Generator().manual_seed(7))
    assert sorted(Counter(plain.tolist()).values()) == [3, 3, 4]


def test_a_stopped_cross_validation_resumes_at_its_fold_and_step_to_the_same_predictions(
    cross_validated, synthetic_dataset, tmp_path, train_argv, stop_training_at
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--folds", FOLDS)
    stop_training_at(2, 3)  # the second training epoch in this process: fold 2's, step 4
    with pytest.raises(checkpoint.Interrupted):
        run_folds(argv)
    assert (tmp_path / "model" / "fold-1" / "model.pt").is_file()
    assert not (tmp_path / "output" / "oof.csv").exists()

    lines = run_folds(argv)

    assert any(line.startswith("resuming from") for line in lines)
    reference, _ = cross_validated
    for name in ("oof.csv", "cv.json"):
        assert (tmp_path / "output" / name).read_text() == (reference / "output" / name).read_text()


def test_folds_trained_apart_make_the_same_cv_once_the_last_is_done(
    cross_validated, synthetic_dataset, tmp_path, train_argv
):
    argv = train_argv(synthetic_dataset, tmp_path, "--epochs", "1", "--folds", FOLDS)
    for fold in (2, 3):
        lines = run_folds([*argv, "--fold", str(fold)])
        assert not any(line.startswith("cv_") for line in lines)  # fold 1 is missing
    assert not (tmp_path / "output" / "cv.json").exists()

    lines = run_folds([*argv, "--fold", "1"])

    reference, _ = cross_validated
    assert lines[-1].startswith("cv_")
    for name in ("oof.csv", "cv.json"):
        assert (tmp_path / "output" / name).read_text() == (reference / "output" / name).read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--folds", "1"], "argument --folds: 2 or more folds (0: one hold-out of --val-fraction)"),
        (["--folds", "3", "--fold", "4"], "argument --fold: from 1 to --folds (3), got 4"),
        (["--fold", "2"], "argument --fold: needs --folds K (k-fold cross-validation)"),
        (["--folds", "21"], "argument --folds: must be from 0 to 20, got 21"),
    ],
)
def test_bad_fold_options_are_refused_in_one_line(options, message):
    done = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, *options], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_predict_writes_the_mean_of_the_fold_models(cross_validated, synthetic_dataset, tmp_path):
    import predict

    run_dir, _ = cross_validated
    argv = ["--model", run_dir / "model", "--data-dir", synthetic_dataset, "--out-dir", tmp_path]
    assert predict.main([str(word) for word in argv]) == 0

    rows = read_csv(tmp_path / "submission.csv")
    folders = saved_model.find_all(run_dir / "model")
    assert [folder.name for folder in folders] == ["fold-1", "fold-2", "fold-3"]
    runs = [predict.predict_with(folder, synthetic_dataset) for folder in folders]
    # Each fold model's own predictions, in the data's terms, averaged here by hand.
    mean = sum(cross_validation.predicted(outputs, d.info) for _, d, outputs in runs) / FOLDS
    info = runs[0][1].info
    assert [row["id"] for row in rows] == runs[0][1].test.ids
    if "classes" not in info:
        written = [float(row[info.get("target", "value")]) for row in rows]
        assert written == pytest.approx(mean.squeeze(1).tolist(), rel=1e-5)
    elif info.get("submit_probability"):
        written = [float(row["probability"]) for row in rows]
        assert written == pytest.approx(mean[:, 1].tolist(), abs=1e-6)
    else:
        assert [row["label"] for row in rows] == [
            info["classes"][k] for k in mean.argmax(dim=1).tolist()
        ]


def test_predict_given_each_fold_folder_writes_the_same_mean(
    cross_validated, synthetic_dataset, tmp_path
):
    import predict

    run_dir, _ = cross_validated
    common = ["--data-dir", synthetic_dataset]
    predict.main(
        [str(w) for w in ["--model", run_dir / "model", *common, "--out-dir", tmp_path / "a"]]
    )
    folds = [run_dir / "model" / f"fold-{fold}" for fold in range(1, FOLDS + 1)]
    predict.main([str(w) for w in ["--model", *folds, *common, "--out-dir", tmp_path / "b"]])
    first, second = ((tmp_path / name / "submission.csv").read_text() for name in "ab")
    assert first == second
