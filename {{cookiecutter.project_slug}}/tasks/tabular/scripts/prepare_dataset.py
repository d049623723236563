"""Put a tabular dataset into dataset/: a synthetic one (offline) or yours.

    python scripts/prepare_dataset.py synthetic [--train-size N] [--test-size M] [--seed S]
    python scripts/prepare_dataset.py rawdata [ARCHIVE]     # your files, from rawdata/
    python scripts/prepare_dataset.py kaggle COMPETITION    # a competition's files, via rawdata/

All write the layout src/data.py reads: train.csv (id, features, target) and test.csv (id,
features). The synthetic rows have 8 numeric features (a few values missing) and a colour, and a
target that a weighted sum of them decides, up to a little noise: for classification whether the
sum is positive ("0" or "1"), for regression (src/metrics.py's PROBLEM) a price around 200.
`rawdata` unpacks an archive (.zip, .tar.gz, ...) that you put in rawdata/, e.g. what a Kaggle
competition gives you, into dataset/; `kaggle` downloads it there first (pip install kaggle).
"""

import argparse
import csv
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import numpy as np

import metrics
import options
from launcher import project, rawdata

FEATURES = [f"f{number}" for number in range(1, 9)]
COLOUR_EFFECT = {"red": 1.5, "green": 0.0, "blue": -1.5}
MAX_ROWS = 10_000_000


def synthetic_rows(count, seed, first_id):
    """Rows (dicts) with id, f1..f8, colour and target ("0" or "1", or a price)."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(12345).normal(size=len(FEATURES))  # the same in every split
    features = rng.normal(size=(count, len(FEATURES)))
    colours = rng.choice(list(COLOUR_EFFECT), count)
    sums = features @ weights + np.array([COLOUR_EFFECT[c] for c in colours])
    if metrics.PROBLEM == "regression":  # in other units than the features'
        targets = [f"{200 + 40 * value:.2f}" for value in sums + rng.normal(scale=0.2, size=count)]
    else:
        targets = [str(int(value > 0)) for value in sums + rng.logistic(scale=0.2, size=count)]
    rows = []
    for index in range(count):
        row = {"id": str(first_id + index)}
        row |= {name: f"{value:.5f}" for name, value in zip(FEATURES, features[index], strict=True)}
        if rng.random() < 0.05:
            row["f1"] = ""  # a missing value, as real tables have
        rows.append(row | {"colour": colours[index], "target": targets[index]})
    return rows


def write_csv(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def prepare_synthetic(out, train_size, test_size, seed):
    # Each split draws from its own stream, so no test row copies a training row.
    columns = ["id", *FEATURES, "colour"]
    write_csv(out / "train.csv", synthetic_rows(train_size, [seed, 0], 1), [*columns, "target"])
    write_csv(out / "test.csv", synthetic_rows(test_size, [seed, 1], train_size + 1), columns)
    print(f"wrote synthetic rows ({train_size} train, {test_size} test, seed {seed}) to {out}")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--out",
        type=Path,
        default=project.DATASET_DIR,
        help="folder that receives train.csv and test.csv (default: the project's dataset/)",
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sources = parser.add_subparsers(dest="source", required=True)
    synthetic = sources.add_parser(
        "synthetic", parents=[common], help="rows of 9 features and a target (offline)"
    )
    whole_number = options.whole_number  # the checks train.py's options use
    size = whole_number(1, MAX_ROWS)
    synthetic.add_argument("--train-size", type=size, default=10000, help="labelled rows")
    synthetic.add_argument("--test-size", type=size, default=2000, help="test rows")
    synthetic.add_argument(
        "--seed", type=whole_number(0, 2**32 - 1), default=0, help="same seed, same rows"
    )
    rawdata.add_sources(sources, common)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.source == "synthetic":
            prepare_synthetic(args.out, args.train_size, args.test_size, args.seed)
        else:
            rawdata.prepare(args)
    except OSError as error:  # --out is a file, a folder that cannot be written, a full disk
        where = f": {error.filename}" if error.filename else ""
        sys.exit(f"error: {error.strerror or error}{where}; run again once that is fixed")
    except KeyboardInterrupt:
        sys.exit("interrupted: the dataset is incomplete; run the same command again")


if __name__ == "__main__":
    main()
