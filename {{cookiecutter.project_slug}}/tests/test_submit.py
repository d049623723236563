"""scripts/submit.py against a stand-in of the Kaggle API (kaggle 2.x: KaggleApi, authenticate,
competition_submit, competition_submissions, answers shaped as kagglesdk's): no network. Without
credentials, or without the package, it says so in one line."""

import csv
import json
import os
import textwrap

import pytest
from aws_fakes import PROJECT_ROOT, run_script

SUBMIT = PROJECT_ROOT / "scripts" / "submit.py"

# The stand-in keeps what it was sent in $KAGGLE_STAND_IN (JSON) and scores every submission
# 0.87654 at the second look; authenticate() exits as kaggle's does without credentials.
STAND_IN = """
import enum, json, os, sys
from types import SimpleNamespace

class SubmissionStatus(enum.Enum):  # kagglesdk.competitions.types.submission_status
    PENDING = 0
    COMPLETE = 1
    ERROR = 2

class KaggleApi:
    def authenticate(self):
        if not (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
            print("Kaggle API credentials are missing. See https://github.com/Kaggle/kaggle-api")
            exit(1)

    def _state(self):
        path = os.environ["KAGGLE_STAND_IN"]
        return json.load(open(path)) if os.path.exists(path) else {"sent": [], "looks": 0}

    def competition_submit(self, file_name, message, competition, quiet=False, sandbox=False):
        state = self._state()
        if competition == "no-such-competition":
            raise RuntimeError("404 Client Error: Not Found")
        state["sent"].append({"file": open(file_name).read(), "message": message,
                              "competition": competition})
        json.dump(state, open(os.environ["KAGGLE_STAND_IN"], "w"))
        return SimpleNamespace(message="Successfully submitted", ref=1000 + len(state["sent"]))

    def competition_submissions(self, competition, **_):
        state = self._state()
        state["looks"] += 1
        json.dump(state, open(os.environ["KAGGLE_STAND_IN"], "w"))
        scored = state["looks"] >= 2
        status = SubmissionStatus.COMPLETE if scored else SubmissionStatus.PENDING
        return [SimpleNamespace(ref=1000 + i, description=sent["message"], error_description="",
                                status=status, public_score="0.87654" if scored else "")
                for i, sent in enumerate(state["sent"], 1)]
"""


@pytest.fixture
def kaggle_stand_in(tmp_path):
    package = tmp_path / "stand-in" / "kaggle"
    (package / "api").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "api" / "__init__.py").write_text("")
    (package / "api" / "kaggle_api_extended.py").write_text(textwrap.dedent(STAND_IN))
    environment = {**os.environ, "PYTHONPATH": str(tmp_path / "stand-in")}
    environment["KAGGLE_STAND_IN"] = str(tmp_path / "kaggle.json")
    return environment


@pytest.fixture
def predicted(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("id,label\n1,cat\n2,dog\n")
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"cv_accuracy": 0.95331, "folds": 5, "examples": 2000}))
    return path, cv


def submit(*argv, env, cwd):
    return run_script([SUBMIT, *map(str, argv)], env=env, cwd=cwd)


def test_submit_names_the_cv_waits_for_the_public_score_and_records_both(
    kaggle_stand_in, predicted, tmp_path
):
    path, cv = predicted
    env = {**kaggle_stand_in, "KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "secret"}
    record = tmp_path / "submissions.csv"
    argv = ["titanic", "--file", path, "--cv", cv, "--record", record, "--poll-seconds", "0.01"]

    done = submit(*argv, env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    (sent,) = json.loads((tmp_path / "kaggle.json").read_text())["sent"]
    assert sent == {
        "file": path.read_text(),
        "message": f"{tmp_path.name} cv_accuracy=0.9533 (5 folds)",
        "competition": "titanic",
    }
    with open(record, newline="") as file:
        (row,) = csv.DictReader(file)
    assert (row["competition"], row["ref"]) == ("titanic", "1001")
    assert row["cv"] == "cv_accuracy=0.9533 (5 folds)"
    assert (row["status"], row["public_score"]) == ("COMPLETE", "0.87654")
    assert "COMPLETE: public score 0.87654" in done.stdout


def test_without_credentials_or_the_package_it_says_so_in_one_line(
    kaggle_stand_in, predicted, tmp_path
):
    path, cv = predicted
    env = {k: v for k, v in kaggle_stand_in.items() if not k.startswith("KAGGLE_")}
    env["KAGGLE_STAND_IN"] = kaggle_stand_in["KAGGLE_STAND_IN"]
    done = submit("titanic", "--file", path, "--record", tmp_path / "r.csv", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("submit.py: error: no Kaggle credentials: put your API")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.csv").exists()

    # A kaggle whose API cannot be imported, as when the package is not installed.
    api = tmp_path / "stand-in" / "kaggle" / "api" / "kaggle_api_extended.py"
    api.write_text('raise ImportError("No module named kagglesdk")\n')
    missing = submit("titanic", "--file", path, env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "submit.py: error: the Kaggle API is not installed: pip install kaggle"
    )


def test_a_refused_submission_is_one_line(kaggle_stand_in, predicted, tmp_path):
    path, _ = predicted
    env = {**kaggle_stand_in, "KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "secret"}
    done = submit("no-such-competition", "--file", path, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "submit.py: error: Kaggle refused the submission: 404 Client Error: Not Found"
    )


def test_help_works_offline_without_the_kaggle_package(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    done = submit("--help", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "--message" in done.stdout


def test_the_report_shows_each_submissions_cv_beside_its_public_score(
    kaggle_stand_in, predicted, tmp_path
):
    path, cv = predicted
    env = {**kaggle_stand_in, "KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "secret"}
    results = tmp_path / "result"
    argv = ["titanic", "--file", path, "--cv", cv, "--poll-seconds", "0.01"]
    assert (
        submit(*argv, "--record", results / "submissions.csv", env=env, cwd=tmp_path).returncode
        == 0
    )

    report = [
        PROJECT_ROOT / "scripts" / "report.py",
        "--results",
        results,
        "--out",
        tmp_path / "r.md",
    ]
    done = run_script(report, env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    text = (tmp_path / "r.md").read_text()
    assert "## Kaggle submissions" in text
    (row,) = [line for line in text.splitlines() if "| titanic |" in line]
    assert "| cv_accuracy=0.9533 (5 folds) | 0.87654 | COMPLETE |" in row
