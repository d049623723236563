"""A job in flight (launcher/job_progress.py): where its start-up went, from SageMaker's status
transitions and the log; how far it is, its ETA and cost while run_job.py follows it; and
--max-cost stopping a running job with StopTrainingJob. Descriptions are checked against
botocore's DescribeTrainingJob output shape; the jobs run against moto with SageMaker played by
tests/aws_fakes.py, which records the transitions and streams the log as the job prints it."""

import json
import re
from datetime import datetime, timedelta, timezone

import botocore.session
import pytest
from aws_fakes import REGION, run_script
from botocore.validate import ParamValidator
from test_run_job import RUN_JOB, environment, only_result, write_config

from launcher import job_cost, job_progress, project

CREATED = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)
JOB = "digits-exp001-20261201100000"


def at(seconds):
    return CREATED + timedelta(seconds=seconds)


def log(seconds, message, host="algo-1-1764583200"):
    return (host, int(at(seconds).timestamp() * 1000), message)


def description(transitions, **changes):
    """A DescribeTrainingJob answer, valid in botocore's output shape."""
    answer = {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/{JOB}/output/model.tar.gz"},
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": transitions[-1]["Status"],
        "AlgorithmSpecification": {"TrainingImage": "image:latest", "TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.g5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": CREATED,
        "SecondaryStatusTransitions": transitions,
        "HyperParameters": {"epochs": "3"},
        **changes,
    }
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DescribeTrainingJob").output_shape
    report = ParamValidator().validate(answer, shape)
    assert not report.has_errors(), report.generate_report()
    return answer


def transition(status, start, end=None, message=""):
    step = {"Status": status, "StartTime": at(start), "StatusMessage": message}
    return step | ({"EndTime": at(end)} if end is not None else {})


# A job as SageMaker reports it: 90 s provisioning, 10 s data, then the container's log.
STARTED = description(
    [
        transition("Starting", 0, 90, "Preparing the instances for training"),
        transition("Downloading", 90, 100, "Downloading input data"),
        transition("Training", 100, None, "Training image download completed."),
    ],
    TrainingStartTime=at(90),
)
CONTAINER_LOG = [
    log(190, "Starting training script"),  # 90 s after Training began: the image came
    log(192, "Installing requirements"),
    log(220, "Running Basic Script driver"),
    log(232, "device=cuda train_examples=54000 val_examples=6000 steps_per_epoch=422"),
    log(233, "epoch 1 step 1/422: first step done, loss 2.3012"),
]


def test_start_up_is_split_into_its_phases_from_the_transitions_and_the_log():
    measured = job_progress.startup(STARTED, CONTAINER_LOG)

    assert measured == {
        "provisioning": 90,
        "data_download": 10,
        "image_download": 90,
        "requirements": 28,
        "loading": 12,
        "first_step": 1,
        "total": 233,
    }
    assert job_progress.startup_line(measured) == (
        "start-up 3 min 53 s to the first step: provisioning 1 min 30 s, image download and "
        "container start 1 min 30 s, installing src/requirements.txt 28 s, loading data and "
        "model 12 s, data download 10 s, first step 1 s"
    )


def test_waiting_for_capacity_and_an_image_download_status_count_as_theirs():
    waited = description(
        [
            transition("Pending", 0, 600, "Waiting for capacity"),
            transition("Starting", 600, 660),
            transition("DownloadingTrainingImage", 660, 700),
            transition("Training", 700),
        ]
    )

    measured = job_progress.startup(waited, [log(705, "Starting training script")])

    assert measured["waiting_for_capacity"] == 600 and measured["image_download"] == 40
    assert "total" not in measured  # no first step yet
    assert job_progress.startup_line(measured).startswith("start-up so far: waiting for capacity")


def test_the_eta_follows_the_pace_since_the_first_step_and_a_restart_starts_it_again():
    progress = job_progress.Progress(epochs=3)
    progress.read([*CONTAINER_LOG, log(283, "epoch 1 step 212/422: loss 0.4, 900 examples/s")])

    # 211 steps in 50 s: an epoch in 100 s; 2.5 epochs left at 10 s after that line.
    assert progress.position == pytest.approx(212 / 422)
    assert progress.eta(at(293)) == pytest.approx((3 - 212 / 422) * 50 / (211 / 422) - 10)

    progress.read([log(400, "epoch 1 step 300/422: first step done, loss 0.3")])  # a restart
    assert progress.eta(at(400)) is None  # one point of the new start: no pace yet
    progress.read([log(410, "epoch=1 train_loss=0.3 val_loss=0.2 val_accuracy=0.9")])
    assert progress.eta(at(410)) == pytest.approx(2 * 10 / (1 - 300 / 422))


def test_a_job_that_trains_every_fold_in_turn_has_no_eta():
    assert job_progress.total_epochs({"folds": "5"}, 5) is None
    assert job_progress.total_epochs({"folds": "5", "fold": "2", "epochs": "7"}, 5) == 7
    assert job_progress.total_epochs({}, 5) == 5


def test_the_cost_uses_the_instance_sagemaker_selected_and_never_passes_max_run():
    selected = dict(STARTED["ResourceConfig"], SelectedInstanceType="ml.g6.xlarge")
    selected["SelectedInstanceCount"] = 2
    running = description(
        STARTED["SecondaryStatusTransitions"],
        **{
            "ResourceConfig": selected,
            "TrainingStartTime": at(90),
        },
    )

    assert job_cost.instances(running) == ("ml.g6.xlarge", 2)
    assert job_progress.cost_so_far(running, 1.0, at(90 + 1800)) == pytest.approx(1.0)
    assert job_progress.projected_cost(running, 1.0, at(1890), 900) == pytest.approx(1.5)
    # Past --max-run (3600 s) SageMaker stops it: 2 instances for an hour at most.
    assert job_progress.projected_cost(running, 1.0, at(1890), 99999) == pytest.approx(2.0)


@pytest.fixture
def long_config(tmp_path):
    """Steps of one example with a progress line each: several seconds of training."""
    path = tmp_path / "config" / "long.yaml"
    path.parent.mkdir()
    return write_config(
        path, **{"epochs": 3, "train-size": 300, "batch-size": 1, "log-interval": "1e-9"}
    )


def test_a_followed_job_shows_its_progress_eta_and_cost_and_its_start_up_comes_back(
    fake_sagemaker, uploaded_dataset, long_config, tmp_path, prices_cache
):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    out = tmp_path / "results"

    done = run_script(
        [RUN_JOB, "--poll-seconds", "0.2", "--config", long_config, "--out-dir", out],
        env=environment(),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    _, exp = only_result(out)
    progress = re.findall(
        rf"^{exp['job_name']}: epoch (\d\.\d) of 3(, about .* left)?; cost so far .*, projected ",
        done.stdout,
        re.MULTILINE,
    )
    assert progress, done.stdout
    assert any(left for _, left in progress), "no ETA once two positions were known"
    # From the fake's status transitions and the log lines train.py printed.
    assert {"provisioning", "data_download", "loading", "first_step", "total"} <= set(
        exp["startup"]
    )
    assert f"{exp['job_name']}: start-up " in done.stdout
    # The fake's transitions are SageMaker's: botocore's shape, its statuses, in its order.
    answer = fake_sagemaker.aws.client("sagemaker").describe_training_job(
        TrainingJobName=exp["job_name"]
    )
    transitions = answer["SecondaryStatusTransitions"]
    shape = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(transitions, shape.shape_for("SecondaryStatusTransitions"))
    assert not report.has_errors(), report.generate_report()
    assert [step["Status"] for step in transitions] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]


def test_max_cost_stops_a_running_job_it_would_pass_and_the_stop_checkpoints(
    fake_sagemaker, uploaded_dataset, long_config, tmp_path, prices_cache
):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    # Paused once epoch 2 begins, until the stop reaches it: it cannot finish first, however
    # slow the guard, and the stop lands mid-epoch.
    fake_sagemaker.pause_at = "epoch 2 step"
    out = tmp_path / "results"
    launched = run_script(
        [RUN_JOB, "--config", long_config, "--out-dir", out, "--no-wait"],
        env=environment(),
        cwd=tmp_path,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    (job_name,) = re.findall(r"^Launched (\S+)", launched.stdout, re.MULTILINE)

    # Far below what 3 epochs cost, whatever this machine's pace.
    done = run_script(
        [RUN_JOB, "--poll-seconds", "0.2", "--attach", job_name, "--out-dir", out]
        + ["--max-cost", "0.000001"],
        env=environment(),
        cwd=tmp_path,
    )

    assert done.returncode != 0
    said = re.search(
        rf"^{job_name}: projected .* passes --max-cost under \$0.01: stopping it ",
        done.stderr,
        re.MULTILINE,
    )
    assert said, done.stdout + done.stderr
    assert fake_sagemaker.stops[job_name].is_set()  # StopTrainingJob reached SageMaker
    exp = json.loads((out / job_results_folder(out, job_name) / "exp.json").read_text())
    assert exp["status"] == "Stopped"
    logs = (out / job_results_folder(out, job_name) / "logs.txt").read_text()
    assert re.search(r"stopped by SIGTERM at epoch \d+, step \d+; checkpoint in", logs), logs


def job_results_folder(out, job_name):
    (folder,) = [
        path.parent.name
        for path in out.glob("*/exp.json")
        if json.loads(path.read_text()).get("job_name") == job_name
    ]
    return folder
