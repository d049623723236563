"""scripts/report.py: every job under result/ side by side in result/report.md (and a PNG),
best first, from a fixture of several jobs and from a real --local run."""

import json
import os

import pytest
import report
from aws_fakes import PROJECT_ROOT, run_script
from PIL import Image

import options
from launcher import job_config, project

MAXIMIZE = job_config.OBJECTIVE_TYPE == "Maximize"


def write_job(results, stamp, **exp):
    folder = results / "jobs" / stamp
    folder.mkdir(parents=True)
    (folder / "exp.json").write_text(json.dumps({"job_name": f"job-{stamp}", **exp}))
    return folder


@pytest.fixture
def several_jobs(tmp_path):
    results = tmp_path / "result"
    common = {"config": "exp001", "mode": "sagemaker", "billable_seconds": 100}
    for stamp, score, lr, cost in [
        ("1", 0.91, "0.01", 0.02),
        ("2", 0.97, "0.05", 0.03),
        ("3", 0.88, "0.002", None),
    ]:
        write_job(
            results,
            stamp,
            status="Completed",
            cost_usd=cost,
            **common,
            hyperparameters={"epochs": "3", "lr": lr},
            final_metrics={job_config.OBJECTIVE: score, "train:loss": 0.1},
        )
    startup = {"provisioning": 90.0, "image_download": 120.0, "total": 240.0}
    exp_file = results / "jobs" / "1" / "exp.json"
    exp_file.write_text(json.dumps({**json.loads(exp_file.read_text()), "startup": startup}))
    triage = {"cause": "the job ran out of memory", "fix": "lower batch-size", "log_tail": []}
    write_job(
        results,
        "4",
        status="Failed",
        triage=triage,
        **common,
        hyperparameters={"epochs": "3", "lr": "0.1"},
        final_metrics={},
    )
    return results


def test_the_report_ranks_jobs_by_the_objective_with_what_differs_and_what_they_cost(
    several_jobs, capsys
):
    out = several_jobs / "report.md"

    assert report.main(["--results", str(several_jobs), "--out", str(out)]) == 0

    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == [
        "config",
        "job",
        "status",
        job_config.OBJECTIVE,
        "train:loss",
        "lr",
        "billable_s",
        "cost",
        "start-up",
    ]  # epochs: the same everywhere
    jobs = [row.split("|")[2].strip() for row in rows[2:]]
    scored = ["[job-2](jobs/2/exp.json)", "[job-1](jobs/1/exp.json)", "[job-3](jobs/3/exp.json)"]
    assert jobs == (scored if MAXIMIZE else scored[::-1]) + ["[job-4](jobs/4/exp.json)"]
    assert "| $0.03 |" in rows[2 if MAXIMIZE else 4] and rows[-1].endswith("| - | - |")
    assert "known cost $0.05" in text
    (first,) = [row for row in rows if "[job-1]" in row]
    assert first.endswith("| 4 min 0 s |")  # the time to its first training step
    phases = "start-up 4 min 0 s to the first step: image download and container start 2 min"
    assert f"## Start-up\n\n- job-1: {phases}" in text
    assert "- job-4: the job ran out of memory; fix: lower batch-size" in text
    with Image.open(several_jobs / "report.png") as image:
        assert image.format == "PNG"
    assert capsys.readouterr().out.startswith(f"wrote {out} and report.png: 4 job(s)")


def test_a_refused_launch_is_no_job_and_the_report_reads_as_a_person_would_write_it(
    tmp_path, capsys
):
    results = tmp_path / "result"
    reason = "CreateTrainingJob failed: ValidationException: bad"
    write_job(results, "1", status="NotCreated", failure_reason=reason)
    final = {job_config.OBJECTIVE: 0.9, "epoch": 5.0}
    write_job(results, "2", status="Completed", final_metrics=final, cost_usd=0.00002)
    out = tmp_path / "report.md"

    assert report.main(["--results", str(results), "--out", str(out)]) == 0

    text = out.read_text()
    assert text.splitlines()[0] == f"# {project.PROJECT_NAME}: jobs in {results}"
    assert "NotCreated" not in text and "job-1" not in text  # its exp.json still says why
    (row,) = [line for line in text.splitlines() if "job-2" in line]
    assert "| 5 |" in row and "| under $0.01 |" in row and "0.0000" not in text
    assert "1 job(s)" in capsys.readouterr().out


def test_no_jobs_yet_says_so_and_writes_nothing(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 0

    assert "no jobs under" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_real_local_job_appears_with_its_objective(
    aws_call_recorder, synthetic_dataset, tmp_path
):
    config = tmp_path / "tiny.yaml"
    tracking = "tracking: false\n" if options.HAS_TRACKING else ""  # it has tests of its own
    config.write_text("epochs: 1\nbatch-size: 64\n" + tracking)
    jobs = tmp_path / "jobs"
    scripts = PROJECT_ROOT / "scripts"
    local = [scripts / "run_job.py", "--local", "--config", config, "--out-dir", jobs]
    done = run_script(
        [*local, "--dataset-uri", synthetic_dataset], env=dict(os.environ), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr

    reporting = [scripts / "report.py", "--results", jobs, "--out", tmp_path / "report.md"]
    made = run_script(reporting, env=dict(os.environ), cwd=tmp_path)

    assert made.returncode == 0, made.stderr
    (exp_file,) = jobs.glob("*/exp.json")
    exp = json.loads(exp_file.read_text())
    text = (tmp_path / "report.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| tiny |")]
    assert exp["job_name"] in row and "| Completed (local) |" in row
    # Its start-up, from its log: loading data and model, then the first step.
    assert f"- {exp['job_name']}: start-up " in text and "first_step" in exp["startup"]
    assert f"| {exp['final_metrics'][job_config.OBJECTIVE]:.4f} |" in row
