"""A failed or stopped job's triage in exp.json (job_results.triage): the known causes, each with
its fix, and the last lines of the log. The launcher tests show it end to end (over quota at
launch, a failing job's log tail)."""

import re

import pytest
from aws_fakes import PROJECT_ROOT

from launcher import job_results


def failed(reason="AlgorithmError: ExecuteUserScriptError", log=()):
    """A failed job's summary (as exp.json has it) and log events."""
    summary = {"status": "Failed", "failure_reason": reason, "instance_type": "ml.g5.xlarge"}
    events = [("algo-1", 1000 + i, line) for i, line in enumerate(log)]
    return summary, events


@pytest.mark.parametrize(
    ("reason", "log", "summary", "cause", "fix"),
    [
        (
            "CreateTrainingJob failed: ResourceLimitExceeded: The account-level service limit "
            "'ml.g5.xlarge for spot training job usage' is 0 Instances",
            [],
            {"spot": True},
            "Service Quota",
            "'ml.g5.xlarge for spot training job usage'",
        ),
        (
            "ResourceLimitExceeded: ...",
            [],
            {"keep_alive_seconds": 600},
            "Service Quota",
            "'ml.g5.xlarge for training warm pool usage'",
        ),
        (
            "CapacityError: Unable to provision requested ML compute capacity. Please retry "
            "using a different ML instance type.",
            [],
            {},
            "no capacity of this instance type",
            "--instance-fallback TYPE",
        ),
        (
            "ClientError: An error occurred (AccessDenied) when calling the GetObject operation "
            "on s3://bucket/dataset",
            ["Downloading the training channel"],
            {},
            "cannot reach the S3 data",
            "s3:GetObject",
        ),
        (
            "AlgorithmError: ExecuteUserScriptError",
            ["epoch=1 ...", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"],
            {},
            "out of memory",
            "lower batch-size",
        ),
        (
            "AlgorithmError: ExecuteUserScriptError",
            ["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'timm.x'"],
            {},
            "package is missing",
            "add timm to src/requirements.txt",
        ),
    ],
    ids=[
        "quota (spot)",
        "quota (warm pool)",
        "capacity",
        "S3 access",
        "GPU memory",
        "missing module",
    ],
)
def test_each_known_cause_has_its_fix(reason, log, summary, cause, fix):
    job, events = failed(reason, log)

    found = job_results.triage({**job, **summary}, events)

    assert cause in found["cause"] and fix in found["fix"]
    assert found["log_tail"] == log


def test_a_process_killed_for_memory_is_out_of_memory_too():
    reason = "AlgorithmError: ExecuteUserScriptError: Command ... exited with code 137"

    found = job_results.triage(*failed(reason, ["epoch=1 ..."]))

    assert found["cause"] == "the job ran out of memory"


def test_a_job_that_failed_without_a_single_log_line_points_at_the_image_and_the_data():
    found = job_results.triage(*failed(log=[]))

    assert "before train.py printed anything" in found["cause"]
    assert "--image-uri" in found["fix"] and "doctor.py" in found["fix"]


def test_an_unknown_failure_keeps_the_log_tail_and_claims_no_cause():
    job, events = failed(log=[f"line {i}" for i in range(40)])

    found = job_results.triage(job, events)

    assert found["cause"] is None and found["fix"] is None
    assert found["log_tail"] == [f"line {i}" for i in range(40 - job_results.LOG_TAIL, 40)]


def test_a_stopped_job_says_what_stops_jobs_and_a_completed_one_has_no_triage():
    job, events = failed(log=["epoch=1 ..."])

    assert "--max-run" in job_results.triage({**job, "status": "Stopped"}, events)["fix"]
    assert job_results.triage({**job, "status": "Completed"}, events) is None


def test_the_docs_list_every_known_cause():
    english, japanese = (PROJECT_ROOT / "docs" / name for name in ("jobs.md", "jobs.ja.md"))
    for pattern, cause, _ in job_results.FAILURE_CAUSES:
        first_words = re.match(r"[A-Za-z ]+", pattern).group()  # e.g. ResourceLimitExceeded
        assert cause in english.read_text(), cause
        assert f"`{first_words}" in japanese.read_text(), first_words
