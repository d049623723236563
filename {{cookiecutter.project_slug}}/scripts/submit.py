"""Submit submission.csv to a Kaggle competition, wait for its public score, and record both.

    python scripts/submit.py titanic                   # result/predictions/submission.csv
    python scripts/submit.py titanic --message "resnet50, 5 folds"
    python scripts/submit.py titanic --no-wait         # submit; the score comes later

The message names the model and its CV score (result/output/cv.json, or --cv FILE) unless you
give one. Each submission becomes a row of result/submissions.csv: when, the competition, the
message, the CV score, Kaggle's reference, the status and the public score, which
scripts/report.py shows side by side. Needs `pip install kaggle` and your API token
(~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY).
"""

import csv
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "src")]  # launcher/; src/ as train.py imports it
import options
from launcher import job_options, project

COLUMNS = ["submitted", "competition", "message", "cv", "ref", "status", "public_score"]
NO_CREDENTIALS = (
    "no Kaggle credentials: put your API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > "
    "API > Create New Token), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def parse_args(argv=None):
    parser = job_options.parser_from_doc(__doc__)
    parser.add_argument("competition", help="the competition's name in its URL, e.g. titanic")
    parser.add_argument(
        "--file",
        type=Path,
        default=project.RESULT_DIR / "predictions" / "submission.csv",
        help="what to submit (default: result/predictions/submission.csv, from predict.py)",
    )
    parser.add_argument("--message", help="the submission's description (default: model and CV)")
    parser.add_argument(
        "--cv",
        type=Path,
        default=project.RESULT_DIR / "output" / "cv.json",
        help="the CV score to name and record (default: result/output/cv.json, if there)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=project.RESULT_DIR / "submissions.csv",
        help="the table of submissions this adds a row to (default: result/submissions.csv)",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the score")
    parser.add_argument(
        "--wait-seconds",
        type=options.positive_float,
        default=900,
        help="how long to wait for the public score (default: 900)",
    )
    parser.add_argument("--poll-seconds", type=options.positive_float, default=15, help="(15)")
    return parser.parse_args(argv)


def cv_score(path):
    """'cv_accuracy=0.9533 (5 folds)' from cv.json, or '' without one."""
    if not path.is_file():
        return ""
    result = json.loads(path.read_text())
    name = next(key for key in result if key.startswith("cv_"))
    return f"{name}={result[name]:.4f} ({result['folds']} folds)"


def kaggle_api():
    """The authenticated Kaggle API; SystemExit with one line when it cannot be."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        sys.exit("submit.py: error: the Kaggle API is not installed: pip install kaggle")
    api = KaggleApi()
    try:
        api.authenticate()  # without credentials it prints a page of help and exits
    except SystemExit:
        sys.exit(f"submit.py: error: {NO_CREDENTIALS}")
    return api


def wait_for_score(api, competition, ref, args):
    """(status, public score) of submission `ref` once Kaggle has scored it, or as it is when
    --wait-seconds have passed."""
    deadline = time.monotonic() + args.wait_seconds
    while True:
        mine = [s for s in api.competition_submissions(competition) or [] if s and s.ref == ref]
        status = getattr(mine[0].status, "name", str(mine[0].status)) if mine else "UNKNOWN"
        if status in ("COMPLETE", "ERROR") or time.monotonic() >= deadline:
            error = mine[0].error_description if mine and status == "ERROR" else ""
            return status, (mine[0].public_score if status == "COMPLETE" else error) or ""
        time.sleep(args.poll_seconds)


def record(path, row):
    """One more row of the submissions table (written whole, atomically)."""
    import checkpoint

    rows = []
    if path.is_file():
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))

    def write(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    checkpoint.write_atomically(path, write, [*rows, row])


def main(argv=None):
    args = parse_args(argv)
    if not args.file.is_file():
        sys.exit(f"submit.py: error: no {args.file}: run python scripts/predict.py first")
    cv = cv_score(args.cv)
    message = args.message or " ".join(filter(None, [args.file.parent.name, cv]))[:500]
    api = kaggle_api()
    try:
        sent = api.competition_submit(str(args.file), message, args.competition)
    except Exception as error:  # an unknown competition, rules not accepted, the network
        sys.exit(f"submit.py: error: Kaggle refused the submission: {error}")
    print(f"submitted {args.file} to {args.competition}: {message!r} ({sent.message})")
    status, score = "PENDING", ""
    if not args.no_wait:
        status, score = wait_for_score(api, args.competition, sent.ref, args)
    row = {"submitted": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    row |= {"competition": args.competition, "message": message, "cv": cv, "ref": sent.ref}
    record(args.record, row | {"status": status, "public_score": score})
    print(f"{status}: public score {score or '-'}; recorded in {args.record}")
    return 0 if status in ("COMPLETE", "PENDING") else 1


if __name__ == "__main__":
    sys.exit(main())
