"""Predict the test set with a trained model and write submission.csv.

    python scripts/predict.py                                  # the model of src/train.py
    python scripts/predict.py --model result/jobs/<timestamp>  # a job's fetched results
    python scripts/predict.py      # after train.py --folds K: the mean of the K fold models
    python scripts/predict.py --model result/jobs/*-exp001-fold*   # of run_job.py --folds K

The model is rebuilt from model.pt and model.json (src/saved_model.py); src/data.py prepares the
test set as in training. submission.csv follows the dataset's sample_submission.csv when it has
one (launcher/submission.py), else: id,label (the class's name), id,probability (of the second
of two classes, where data.py asks for it), or id,<target> (the number, in its units).
With images, predictions.png and misclassified.png (validation images the model gets wrong).
"""

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import torch

import cross_validation
import data
import metrics
import options
import plots
import saved_model
import splits
from launcher import job_options, project, submission

SHOWN = 32  # images per picture


def parse_args(argv=None):
    parser = job_options.parser_from_doc(__doc__)
    train_parser = options.build_parser()  # where train.py saves and reads
    parser.add_argument(
        "--model",
        type=Path,
        nargs="+",
        default=[train_parser.get_default("model_dir")],
        help="folder holding model.pt and model.json (or the fold-<i>/ folders of --folds), or a "
        "fetched job's folder; several: the mean of their models, e.g. fold jobs' "
        "(default: result/model/, where src/train.py saves)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=train_parser.get_default("data_dir"),
        help="the dataset folder src/data.py reads (default: dataset/)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=project.RESULT_DIR / "predictions",
        help="where submission.csv and the pictures go (default: result/predictions/)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation for images: each also mirrored, the predictions averaged",
    )
    return parser.parse_args(argv)


def pictures(dataset, test_outputs, model, out_dir):
    """predictions.png and misclassified.png, for image inputs (n, channels, height, width)."""
    first_input = dataset.test[0][0]
    if first_input.dim() != 3 or "classes" not in dataset.info:
        return []
    classes = dataset.info["classes"]
    shown = torch.stack([dataset.test[i][0] for i in range(min(SHOWN, len(dataset.test)))])
    captions = [classes[i] for i in test_outputs[:SHOWN].argmax(dim=1).tolist()]
    files = [plots.plot_examples(shown, captions, out_dir / "predictions.png", "Predictions")]
    predicted = submission.predict(model, dataset.val).argmax(dim=1)
    wrong = (predicted != dataset.val.targets).nonzero().flatten()[:SHOWN]
    if len(wrong):
        captions = [
            f"{classes[dataset.val.targets[i]]} as {classes[predicted[i]]}" for i in wrong.tolist()
        ]
        title = "Misclassified validation images (true as predicted)"
        images = torch.stack([dataset.val[i][0] for i in wrong.tolist()])
        files.append(plots.plot_examples(images, captions, out_dir / "misclassified.png", title))
    else:
        print("every validation image is predicted right: no misclassified.png")
    return files


def predict_with(folder, data_dir, tta=False):
    """(model, dataset, test outputs) of `folder`'s model, the data prepared as in its training."""
    model, about = saved_model.load(folder)
    trained_with = about["options"]
    held_out = trained_with["val_fraction"]
    if trained_with.get("folds"):
        held_out = splits.Fold(trained_with["folds"], trained_with["fold"])
    options = argparse.Namespace(**trained_with)
    dataset = data.load(data_dir, held_out, trained_with["seed"], about["data"], options)
    if dataset.test is None:
        raise data.DatasetError(f"the dataset in {data_dir} has no test set to predict")
    if tta and dataset.test[0][0].dim() != 3:
        raise data.DatasetError("--tta flips images, and this model's inputs are not images")
    return model, dataset, submission.predict(model, dataset.test, tta)


def main(argv=None):
    args = parse_args(argv)
    try:  # one model, or each fold's (train.py --folds): their mean
        folders = [folder for given in args.model for folder in saved_model.find_all(given)]
        runs = [predict_with(folder, args.data_dir, args.tta) for folder in folders]
    except (FileNotFoundError, data.DatasetError) as error:
        sys.exit(f"predict.py: error: {error}")
    model, dataset, outputs = runs[0]
    if len(runs) > 1:
        outputs = cross_validation.ensemble([o for *_, o in runs], [d.info for _, d, _ in runs])
    sample = args.data_dir / submission.SAMPLE
    try:  # the competition's format when its sample is there
        if sample.is_file():
            header, rows = submission.as_sample(sample, dataset.test.ids, outputs, dataset.info)
        else:
            predicted = submission.columns(outputs, dataset.info)
            header = ["id", *predicted]
            rows = zip(dataset.test.ids, *predicted.values(), strict=True)
    except submission.SubmissionError as error:
        sys.exit(f"predict.py: error: {error}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "submission.csv"
    kept = submission.keep_earlier(path)
    submission.write(path, header, rows)
    shown = header[1] if len(header) == 2 else f"{len(header) - 1} columns"
    shown += f" as in {sample.name}" * sample.is_file()
    shown += f", the mean of {len(runs)} models" * (len(runs) > 1)
    print(f"wrote {path}: {len(dataset.test)} predictions ({shown})")
    if kept:
        print(f"kept the earlier one as {kept.name}")
    if dataset.test.targets is not None:  # a labelled test set: its metric line, as training's
        print(metrics.line(metrics.evaluate(outputs, dataset.test.targets, "test")))
    for picture in pictures(dataset, outputs, model, args.out_dir):
        print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
