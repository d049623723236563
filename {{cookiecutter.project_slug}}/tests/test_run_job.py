"""run_job.py against moto's server, with SageMaker played by tests/aws_fakes.py.

Every job runs the real src/train.py on a tiny synthetic dataset for one epoch.
"""

import concurrent.futures
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import run_job as run_job_script
from aws_fakes import LONG_NAME, PROJECT_ROOT, REGION, run_script, upload_folder

import metrics
import options
from launcher import aws_env, job_config, job_cost, job_options, job_request, job_results, project

RUN_JOB = PROJECT_ROOT / "scripts" / "run_job.py"
BUCKET = aws_env.default_bucket(REGION)
DATASET_URI = aws_env.dataset_uri(BUCKET)
# One quick epoch; tracking (where rendered) has its own tests and would double the time.
TINY = {
    "epochs": "1",
    "batch-size": "64",
    "seed": "1",
    #% if cookiecutter.experiment_tracking == "mlflow"
    "tracking": "false",
    #% endif
}


def write_config(path, **changes):
    path.write_text("".join(f"{key}: {value}\n" for key, value in {**TINY, **changes}.items()))
    return path


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config" / "tiny.yaml"
    path.parent.mkdir()
    return write_config(path)


def run_job(*options, env, cwd):
    return run_script([RUN_JOB, "--poll-seconds", "0.2", *options], env=env, cwd=cwd)


def environment():
    return dict(os.environ)


def result_folders(out_dir):
    return sorted(path.parent for path in out_dir.glob("*/exp.json"))


def only_result(out_dir):
    (folder,) = result_folders(out_dir)
    return folder, json.loads((folder / "exp.json").read_text())


def test_job_runs_and_its_model_outputs_and_logs_come_back(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    out = tmp_path / "results"
    done = run_job("--config", tiny_config, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    folder, exp = only_result(out)
    assert folder.name == job_results.job_timestamp(exp["job_name"])
    assert re.fullmatch(re.escape(project.EXPERIMENT_NAME) + r"-tiny-\d{14}", exp["job_name"])
    assert (folder / "model" / "model.pt").stat().st_size > 0
    header, *_, last = (folder / "output" / "metrics.csv").read_text().splitlines()
    assert header == ",".join(metrics.EPOCH_COLUMNS)
    log = (folder / "logs.txt").read_text()
    assert re.search(r"^\S+Z?\S* \[algo-1-\d+\] epoch=1 train_loss=", log, re.MULTILINE), log
    assert exp["status"] == "Completed" and exp["mode"] == "sagemaker"
    assert exp["hyperparameters"] == TINY
    assert exp["dataset_uri"] == DATASET_URI + "/"  # a folder: dataset-v2/ beside it stays out
    assert exp["model_uri"].endswith(f"/{exp['job_name']}/output/model.tar.gz")
    assert exp["billable_seconds"] >= 1
    last_epoch = dict(zip(header.split(","), last.split(","), strict=True))
    reached = float(last_epoch[metrics.OBJECTIVE])
    assert exp["final_metrics"][job_config.OBJECTIVE] == pytest.approx(reached, abs=1e-4)
    assert (exp["experiment"], exp["config"]) == (project.EXPERIMENT_NAME, "tiny")
    (request,) = fake_sagemaker.requests
    assert request["Environment"]["PYTHONUNBUFFERED"] == "1"
    assert "epoch=1" in done.stdout  # a single job's log lines are printed while waiting


def test_a_spot_job_comes_back_with_its_bill_and_saving(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    out = tmp_path / "results"

    done = run_job(
        "--config", tiny_config, "--use-spot", "--out-dir", out, env=environment(), cwd=tmp_path
    )

    assert done.returncode == 0, done.stdout + done.stderr
    _, exp = only_result(out)
    billable, training = exp["billable_seconds"], exp["training_seconds"]
    assert exp["spot"] and 1 <= billable < training
    assert exp["price_usd_per_hour"] == 0.736 and exp["price_unknown"] is None
    assert exp["cost_usd"] == pytest.approx(billable * 0.736 / 3600)
    assert exp["spot_saving"] == pytest.approx(1 - billable / training, abs=1e-4)
    *_, row = [line for line in done.stdout.splitlines() if exp["job_name"] in line.split()]
    saved = f"{job_cost.dollars(exp['cost_usd'])} (spot saved {exp['spot_saving']:.0%})"
    assert saved in row


def test_a_stopped_on_demand_job_keeps_its_last_epoch_and_the_next_launch_resumes_it(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    # A progress line after every step of one example; the fake pauses train.py when it reads
    # the first line of epoch 2. train.py prints on meanwhile, but no further than the pipe and
    # the reader's buffers hold (under 80 KiB), while epochs 2 and 3 have over 150 KiB to print:
    # the stop lands mid-epoch 2 or 3, however slow this machine or its reader thread is.
    write_config(tiny_config, epochs=3, **{"log-interval": "1e-9", "batch-size": 1})
    out = tmp_path / "results"
    fake_sagemaker.pause_at = "epoch 2 step"
    command = [sys.executable, RUN_JOB, "--poll-seconds", "0.2", "--config", tiny_config]
    launch = subprocess.Popen(
        [str(word) for word in [*command, "--no-use-spot", "--out-dir", out]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert fake_sagemaker.paused.wait(timeout=300), launch.kill() or launch.communicate()[0]
    (job_name,) = fake_sagemaker.stops
    fake_sagemaker.aws.client("sagemaker").stop_training_job(TrainingJobName=job_name)
    stopped_output = launch.communicate(timeout=300)[0]

    assert launch.returncode != 0, stopped_output
    folder, exp = only_result(out)
    assert exp["status"] == "Stopped" and "launch the same config again" in exp["triage"]["fix"]
    prefix = f"s3://{BUCKET}/{project.EXPERIMENT_NAME}-tiny/checkpoints/"
    assert exp["checkpoint_uri"] == prefix
    stopped_log = (folder / "logs.txt").read_text()
    stop = re.search(r"stopped by SIGTERM at (epoch ([23]), step \d+)", stopped_log)
    assert stop, stopped_log
    completed = int(stop[2]) - 1
    about = json.loads((folder / "model" / "model.json").read_text())
    assert about["trained_epochs"] == completed  # the last completed epoch's model came back
    assert f"kept the model of epoch {completed} (the last completed)" in stopped_log
    fake_sagemaker.pause_at = None

    relaunched = run_job("--config", tiny_config, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert relaunched.returncode == 0, relaunched.stdout + relaunched.stderr
    (resumed,) = [f for f in result_folders(out) if f != folder]
    log = (resumed / "logs.txt").read_text()
    assert re.search(f"resuming from \\S*/opt/ml/checkpoints: {stop[1]}$", log, re.MULTILINE), log
    assert "epoch=1 " not in log and f"epoch={completed} " not in log  # not trained again
    assert json.loads((resumed / "model" / "model.json").read_text())["trained_epochs"] == 3
    requests = fake_sagemaker.requests
    assert [r["CheckpointConfig"]["S3Uri"] for r in requests] == [prefix, prefix]


def test_failed_job_saves_logs_and_reason_and_exits_nonzero(
    fake_sagemaker, aws, tiny_config, tmp_path
):
    broken = tmp_path / "broken"  # a channel without the dataset src/data.py reads
    broken.mkdir()
    (broken / "notes.txt").write_text("the data is elsewhere")
    aws.client("s3").create_bucket(Bucket=BUCKET)
    upload_folder(aws.client("s3"), tmp_path / "broken", f"s3://{BUCKET}/broken")
    out = tmp_path / "results"

    done = run_job(
        "--config",
        tiny_config,
        "--dataset-uri",
        f"s3://{BUCKET}/broken",
        "--out-dir",
        out,
        env=environment(),
        cwd=tmp_path,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    folder, exp = only_result(out)
    assert exp["status"] == "Failed"
    assert "exited with code" in exp["failure_reason"]
    assert exp["failure_reason"] in done.stdout
    assert "Executing command:" in (folder / "logs.txt").read_text()
    assert not (folder / "model" / "model.pt").exists()
    tail = exp["triage"]["log_tail"]  # the last lines of the log, in exp.json and printed
    assert 0 < len(tail) <= job_results.LOG_TAIL and f"    {tail[-1]}" in done.stdout


def test_api_error_leaves_no_job_and_a_result_saying_why(
    fake_sagemaker, aws, tiny_config, tmp_path
):
    fake_sagemaker.behaviour = "reject"
    out = tmp_path / "results"

    done = run_job("--config", tiny_config, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert done.returncode == 1
    said = done.stdout + done.stderr
    assert said.count("CreateTrainingJob failed: ValidationException") == 1, said
    _, exp = only_result(out)
    assert exp["status"] == "NotCreated"
    assert "not available" in exp["failure_reason"]
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_a_launch_over_quota_says_which_quota_to_raise(fake_sagemaker, aws, tiny_config, tmp_path):
    fake_sagemaker.behaviour = "over quota"
    out = tmp_path / "results"

    done = run_job("--config", tiny_config, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert done.returncode == 1
    _, exp = only_result(out)
    quota = f"{project.INSTANCE_TYPE} for training job usage"
    assert exp["status"] == "NotCreated" and "ResourceLimitExceeded" in exp["failure_reason"]
    assert exp["triage"]["cause"] == "a Service Quota of the account is too low for this job"
    assert f"ask for more of '{quota}' in Service Quotas" in exp["triage"]["fix"]
    assert f"  fix: {exp['triage']['fix']}" in done.stdout


def test_hostile_model_archive_writes_nothing_outside_its_folder(
    fake_sagemaker, aws, tiny_config, tmp_path
):
    fake_sagemaker.behaviour = "hostile"
    aws.client("s3").create_bucket(Bucket=BUCKET)
    out = tmp_path / "deep" / "results"

    done = run_job("--config", tiny_config, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert done.returncode == 1
    folder, exp = only_result(out)
    refused = " ".join(exp["problems"])
    for name in ["../escaped.txt", "passwd-link", "../../deeper-escape.txt"]:
        assert f"refused {name!r} in model.tar.gz" in refused
    assert sorted(path.name for path in tmp_path.rglob("*escape*")) == []
    assert not (folder / "model" / "passwd-link").exists()
    assert f"refused '{LONG_NAME[:77]}...' in model.tar.gz: File name too long" in refused
    assert (folder / "model" / "model.pt").read_bytes() == b"owned"  # the rest is extracted
    assert "epoch=1" in (folder / "logs.txt").read_text()


def test_ctrl_c_while_waiting_saves_what_there_is_and_says_how_to_stop(
    fake_sagemaker, aws, tiny_config, tmp_path
):
    fake_sagemaker.behaviour = "hang"
    aws.client("s3").create_bucket(Bucket=BUCKET)
    out = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            RUN_JOB,
            "--config",
            tiny_config,
            "--out-dir",
            out,
            "--poll-seconds",
            "0.2",
        ],
        env=environment(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = ""
    while "InProgress" not in seen:
        line = process.stdout.readline()
        assert line, f"run_job.py ended before the job was running:\n{seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)

    assert process.returncode == 130, seen + rest
    assert "stop-training-job" in rest
    folder, exp = only_result(out)
    assert exp["status"] == "InProgress"
    assert "--fetch " + exp["job_name"] in rest
    assert (folder / "logs.txt").exists()


def test_no_wait_returns_at_once_and_fetch_fills_the_same_folder(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    fake_sagemaker.behaviour = "hang"
    out = tmp_path / "results"
    submitted = run_job(
        "--config", tiny_config, "--out-dir", out, "--no-wait", env=environment(), cwd=tmp_path
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    folder, exp = only_result(out)
    assert exp["status"] == "InProgress"

    fake_sagemaker.behaviour = "run"
    fake_sagemaker.release.set()
    fetched = run_job("--fetch", exp["job_name"], "--out-dir", out, env=environment(), cwd=tmp_path)

    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert only_result(out) == (folder, json.loads((folder / "exp.json").read_text()))
    assert only_result(out)[1]["status"] == "Completed"
    assert (folder / "model" / "model.pt").exists()


@pytest.mark.slow
def test_several_configs_run_as_parallel_jobs_with_a_summary(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    second = tiny_config.with_name("tiny2.yaml")
    write_config(second, **{"batch-size": "128", "seed": "2"})
    out = tmp_path / "results"

    done = run_job(
        "--config", tiny_config, second, "--out-dir", out, env=environment(), cwd=tmp_path
    )

    assert done.returncode == 0, done.stdout + done.stderr
    folders = result_folders(out)
    assert [folder.name.split("-", 1)[1] for folder in folders] == ["tiny", "tiny2"]
    assert len(fake_sagemaker.requests) == 2
    table = done.stdout[done.stdout.index("config  job") :]
    assert re.search(r"^tiny\s+\S+-tiny-\d{14}\s+Completed\s+[01]\.\d{4}", table, re.MULTILINE)
    assert re.search(r"^tiny2\s+\S+-tiny2-\d{14}\s+Completed", table, re.MULTILINE)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("epoch: 1\n", "unknown key 'epoch'; did you mean 'epochs'?"),
        ("batch_size: 32\n", "did you mean 'batch-size'?"),
        ("epochs: five\n", "argument --epochs: invalid"),
        ("lr: [0.1, 0.2]\n", "argument --lr: invalid"),
        ("data-dir: /data\n", "'data-dir' is a path SageMaker sets"),
        ("epochs: 1\n  bad indent: [\n", "not valid YAML"),
        ("- epochs\n", "expected `key: value` lines"),
    ],
)
def test_bad_config_fails_fast_without_any_aws_call(aws_call_recorder, tmp_path, content, message):
    config = tmp_path / "exp.yaml"
    config.write_text(content)

    done = run_job("--config", config, env=environment(), cwd=tmp_path)

    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert aws_call_recorder == []


def test_missing_config_file_fails_fast_without_any_aws_call(aws_call_recorder, tmp_path):
    done = run_job("--config", tmp_path / "exp404.yaml", env=environment(), cwd=tmp_path)

    assert done.returncode == 2
    assert "config file not found" in done.stderr
    assert aws_call_recorder == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--input-mode", "Pipe"], "src/data.py reads files from a folder"),
        (["--use-spot", "--keep-alive", "600"], "does not work with --use-spot"),
        (["--no-use-spot", "--keep-alive", "21601"], "at most 21600 seconds"),
        (["--dataset-uri", "dataset/"], "not an S3 URI"),
        (["--exp-name", "bad_name!"], "use letters, digits and single hyphens"),
    ],
)
def test_bad_options_are_refused_with_the_reason(aws_call_recorder, tmp_path, options, message):
    done = run_job(*options, env=environment(), cwd=tmp_path)

    assert done.returncode == 2
    assert message in done.stderr
    assert aws_call_recorder == []


def test_a_dry_run_shows_what_would_be_launched_on_one_screen(aws_call_recorder, tmp_path):
    config = write_config(tmp_path / "tiny.yaml")
    done = run_job("--dry-run", "--config", config, env=environment(), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 10 and lines[-1] == "(the whole CreateTrainingJob request: add --json)"
    assert lines[0].startswith(f"{project.EXPERIMENT_NAME}-tiny-")
    shown = dict(line.split(maxsplit=1) for line in lines[1:-1])
    assert shown["compute"].startswith(f"1 x {project.INSTANCE_TYPE} (")
    assert "epochs=1" in shown["hyperparameters"] and shown["data"].startswith("training <- s3://")
    assert f"project={project.PROJECT_SLUG} user=" in shown["tags"]
    assert aws_call_recorder == []


def test_dry_run_prints_the_request_without_any_aws_call(aws_call_recorder, tmp_path):
    done = run_job("--dry-run", "--json", env=environment(), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["HyperParameters"] == {
        key: str(value)
        for key, value in job_config.load_config(
            PROJECT_ROOT / "config" / "exp001.yaml", options.build_parser()
        ).hyperparameters.items()
    }
    assert aws_call_recorder == []


def test_dry_run_imports_neither_torch_nor_the_training_code(aws_call_recorder, tmp_path):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", RUN_JOB, "--dry-run"],
        env=environment(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "json" in imported  # the listing is there
    assert not {"torch", "torchvision", "train", "model", "data"} & imported


def test_run_job_sh_names_the_missing_config_and_lists_the_others(tmp_path):
    done = run_script(
        [PROJECT_ROOT / "scripts" / "run_job.sh", "999"], env=environment(), cwd=tmp_path
    )

    assert done.returncode == 2
    assert f"no config file {PROJECT_ROOT / 'config' / 'exp999.yaml'}" in done.stderr
    assert "exp001.yaml" in done.stderr
    usage = run_script([PROJECT_ROOT / "scripts" / "run_job.sh"], env=environment(), cwd=tmp_path)
    assert usage.returncode == 2 and "usage: bash scripts/run_job.sh NUMBER" in usage.stderr


def test_local_run_without_a_dataset_says_how_to_make_one(aws_call_recorder, tmp_path):
    done = run_job("--local", "--dataset-uri", tmp_path / "none", env=environment(), cwd=tmp_path)

    assert done.returncode == 2
    assert "prepare_dataset.py synthetic" in done.stderr
    assert aws_call_recorder == []


def normalized(request):
    """The request with the job's timestamp replaced, so it compares across runs."""
    text = json.dumps(request)
    stamp = job_results.job_timestamp(request["TrainingJobName"])
    return json.loads(text.replace(stamp, "<timestamp>"))


def test_dry_run_request_snapshot_with_spot(aws_call_recorder, tmp_path, tiny_config, monkeypatch):
    #% if cookiecutter.experiment_tracking == "mlflow"
    monkeypatch.setenv(
        "MLFLOW_TRACKING_ARN",
        f"arn:aws:sagemaker:{REGION}:123456789012:mlflow-tracking-server/t",
    )
    #% endif
    done = run_job(
        "--dry-run",
        "--json",
        "--config",
        tiny_config,
        "--use-spot",
        "--max-run",
        "600",
        "--input-mode",
        "FastFile",
        "--instance-type",
        "ml.m5.xlarge",
        env=environment(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    request = normalized(json.loads(done.stdout))

    base = f"{project.EXPERIMENT_NAME}-tiny"
    prefix = f"s3://{BUCKET}/{base}/{base}-<timestamp>"
    image = request["AlgorithmSpecification"].pop("TrainingImage")
    if project.CONTAINER == "custom":
        registry = f"{project.AWS_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com"
        assert image == f"{registry}/{project.PROJECT_SLUG}:latest"
    else:
        assert re.fullmatch(
            r"\d{12}\.dkr\.ecr\."
            + REGION
            + r"\.amazonaws\.com(\.cn)?/pytorch-training:"
            + re.escape(project.PYTORCH_VERSION)
            + r"-cpu-py3\d+",
            image,
        ), image

    def channel(name, uri, mode):
        source = {
            "S3DataType": "S3Prefix",
            "S3Uri": uri,
            "S3DataDistributionType": "FullyReplicated",
        }
        return {"ChannelName": name, "DataSource": {"S3DataSource": source}, "InputMode": mode}

    expected_environment = {"PYTHONUNBUFFERED": "1"}
    #% if cookiecutter.experiment_tracking == "mlflow"
    expected_environment.update(
        MLFLOW_TRACKING_URI=f"arn:aws:sagemaker:{REGION}:123456789012:mlflow-tracking-server/t",
        MLFLOW_EXPERIMENT_NAME=project.EXPERIMENT_NAME,
        MLFLOW_RUN_NAME=f"{base}-<timestamp>",
    )
    #% endif
    assert request == {
        "TrainingJobName": f"{base}-<timestamp>",
        "AlgorithmSpecification": {
            "TrainingInputMode": "FastFile",
            "MetricDefinitions": job_config.METRIC_DEFINITIONS,
            # PID 1 passes a stop on to train.py (src/container_entry.py), then the SDK's command.
            "ContainerEntrypoint": [
                "python3",
                "/opt/ml/input/data/code/container_entry.py",
                "--entry-script",
                "train.py",
                "--",
            ],
            "ContainerArguments": [
                "/bin/bash",
                "-c",
                "chmod +x /opt/ml/input/data/sm_drivers/sm_train.sh "
                "&& /opt/ml/input/data/sm_drivers/sm_train.sh",
            ],
        },
        "HyperParameters": TINY,
        "InputDataConfig": [
            channel("training", DATASET_URI + "/", "FastFile"),
            channel("code", f"{prefix}/input/code", "File"),
            channel("sm_drivers", f"{prefix}/input/sm_drivers", "File"),
        ],
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "RoleArn": (
            project.SAGEMAKER_ROLE
            if project.SAGEMAKER_ROLE.startswith("arn:")
            else f"arn:aws:iam::{project.AWS_ACCOUNT_ID}:role/{project.SAGEMAKER_ROLE}"
        ),
        "Tags": [
            {"Key": "project", "Value": project.PROJECT_SLUG},
            {"Key": "user", "Value": job_request.launching_user()},
            {"Key": "experiment", "Value": project.EXPERIMENT_NAME},
            {"Key": "config", "Value": "tiny"},
        ],
        "StoppingCondition": {"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 1200},
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{base}", "CompressionType": "GZIP"},
        # One prefix per config, beside its job folders: the next launch resumes from it.
        "CheckpointConfig": {
            "S3Uri": f"s3://{BUCKET}/{base}/checkpoints/",
            "LocalPath": "/opt/ml/checkpoints",
        },
        "Environment": expected_environment,
        "EnableManagedSpotTraining": True,
    }
    assert aws_call_recorder == []


def test_dry_run_without_spot_keeps_a_warm_pool_when_asked(aws_call_recorder, tmp_path):
    options = ["--dry-run", "--json", "--no-use-spot", "--keep-alive", "900"]
    done = run_job(*options, env=environment(), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900
    assert "EnableManagedSpotTraining" not in request
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]
    # On-demand jobs keep checkpoints too: a stopped one resumes when launched again.
    base = f"{project.EXPERIMENT_NAME}-exp001"
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/{base}/checkpoints/"


def test_job_logs_reads_every_page_of_every_host_in_time_order(aws):
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=job_results.LOG_GROUP)
    job = f"{project.EXPERIMENT_NAME}-exp001-20250101000000"
    start = int(time.time() * 1000) - 60_000  # CloudWatch drops events older than 14 days
    expected = []
    for stream, offset in [(f"{job}/algo-1-1", 0), (f"{job}/algo-2-1", 1), (f"{job}0/algo-1-1", 2)]:
        logs.create_log_stream(logGroupName=job_results.LOG_GROUP, logStreamName=stream)
        events = [
            {"timestamp": start + 10 * i + offset, "message": f"{stream} {i}"} for i in range(5)
        ]
        logs.put_log_events(
            logGroupName=job_results.LOG_GROUP, logStreamName=stream, logEvents=events
        )
        if not stream.startswith(f"{job}0"):  # another job whose name starts the same
            expected += [(stream.split("/")[1], e["timestamp"], e["message"]) for e in events]

    reader = job_results.JobLogs(logs, job, page_size=2)

    assert reader.read_new() == sorted(expected, key=lambda event: event[1])
    assert reader.read_new() == []  # nothing new since
    logs.put_log_events(
        logGroupName=job_results.LOG_GROUP,
        logStreamName=f"{job}/algo-1-1",
        logEvents=[{"timestamp": start + 1000, "message": "late"}],
    )
    assert reader.read_new() == [("algo-1-1", start + 1000, "late")]


def test_job_names_fit_sagemakers_limit():
    long_experiment = "e" * 40
    name = job_config.base_job_name(long_experiment, job_config.config_name("my_exp.v2.yaml"))

    assert name == f"{long_experiment}-my-exp-"[: job_config.BASE_NAME_LIMIT].rstrip("-")
    assert len(name) + len("-20250101000000") <= 63
    assert job_config.config_name("my_exp.v2.yaml") == "my-exp-v2"
    with pytest.raises(job_config.ConfigError, match="too long"):
        job_config.base_job_name("e" * 48, "exp001")


@pytest.mark.slow
def test_readme_walkthrough_runs_end_to_end_and_local_gives_what_sagemaker_gives(
    fake_sagemaker, tmp_path
):
    import shutil

    project = tmp_path / "project"
    for folder in ["launcher", "scripts", "src", "config"]:
        shutil.copytree(
            PROJECT_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (project / "config" / "exp001.yaml").write_text("epochs: 1\nbatch-size: 64\n")
    steps = [
        ["scripts/prepare_dataset.py", "synthetic", "--train-size", "2000", "--test-size", "500"],
        ["src/train.py", "--epochs", "1"],
        ["scripts/upload_dataset.py"],
        ["scripts/run_job.sh", "001", "--poll-seconds", "0.2"],
        ["scripts/run_job.py", "--local"],
    ]
    for step in steps:
        done = run_script([project / step[0], *step[1:]], env=environment(), cwd=tmp_path)
        assert done.returncode == 0, f"{step}:\n{done.stdout}\n{done.stderr}"

    cloud, local = (
        json.loads((folder / "exp.json").read_text())
        for folder in result_folders(project / "result" / "jobs")
    )
    assert (cloud["mode"], local["mode"]) == ("sagemaker", "local")
    assert cloud["status"] == local["status"] == "Completed"
    assert cloud.keys() == local.keys()
    assert cloud["hyperparameters"] == local["hyperparameters"]
    assert cloud["final_metrics"].keys() == local["final_metrics"].keys()

    def content(summary):
        folder = Path(summary["results_dir"])
        return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))

    assert content(cloud) == content(local)
    assert {"exp.json", "logs.txt", "model/model.pt", "output/metrics.csv"} <= set(content(cloud))


def test_fetch_of_a_job_that_does_not_exist_says_so_once_and_makes_no_folder(aws, tmp_path):
    out = tmp_path / "results"
    missing = "no-such-job-20260101000000"

    done = run_job("--fetch", missing, "--out-dir", out, env=environment(), cwd=tmp_path)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"run_job.py: error: no training job no-such-job-20260101000000 in {REGION}; list yours "
        f"with: aws sagemaker list-training-jobs --region {REGION}"
    ]
    assert "Fetch again" not in done.stdout and not out.exists()


def test_launches_in_the_same_second_each_get_a_folder_of_their_own(tmp_path):
    names = [f"{project.EXPERIMENT_NAME}-exp{n:03}-20260101000000" for n in range(8)]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        folders = list(pool.map(lambda name: job_results.results_folder(tmp_path, name), names))

    assert len(set(folders)) == len(names) and all(folder.is_dir() for folder in folders)
    assert sorted(folder.name for folder in folders) == ["20260101000000"] + [
        f"20260101000000-{n}" for n in range(2, 9)
    ]


def test_an_archive_that_would_expand_past_its_limit_is_refused_member_by_member(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(job_results, "EXPANSION_FLOOR", 1024 * 1024)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, size in [("model.pt", 1000), ("bomb.bin", 64 * 1024 * 1024), ("notes.txt", 10)]:
            member = tarfile.TarInfo(name)
            member.size = size
            tar.addfile(member, io.BytesIO(bytes(size)))

    refused = job_results.extract_archive(archive, tmp_path / "model")

    assert len(refused) == 1 and refused[0].startswith("refused 'bomb.bin' in model.tar.gz: ")
    assert "67,108,864 bytes would expand" in refused[0]
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == ["model.pt", "notes.txt"]


def test_ctrl_c_in_local_stops_the_job_as_sagemaker_does_with_sigterm_to_train_py(
    aws_credentials, synthetic_dataset, tiny_config, tmp_path
):
    # Many epochs and a line per step: Ctrl-C lands early, however late this test reads.
    write_config(tiny_config, epochs=20, **{"log-interval": "1e-9"})
    out = tmp_path / "results"
    command = [sys.executable, RUN_JOB, "--local", "--config", tiny_config, "--out-dir", out]
    command += ["--dataset-uri", synthetic_dataset]
    process = subprocess.Popen(
        [str(word) for word in command], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    for line in process.stdout:
        if line.startswith("epoch 1 step"):
            process.send_signal(signal.SIGINT)  # Ctrl-C reaches run_job.py alone: its session
            break
    process.communicate(timeout=300)

    assert process.returncode == 130
    folder, exp = only_result(out)
    assert exp["status"] == "Stopped"
    log = (folder / "logs.txt").read_text()
    assert "container_entry: SIGTERM passed on to [" in log  # to train.py, as in a job
    stop = re.search(r"stopped by SIGTERM at (epoch \d+, step \d+); checkpoint in ", log)
    assert stop, log
    assert exp["checkpoint_uri"] == str(out / "checkpoints" / f"{project.EXPERIMENT_NAME}-tiny")

    again = run_script(command[1:], env=environment(), cwd=tmp_path)  # a relaunch resumes

    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(f"resuming from \\S+: {stop[1]}$", again.stdout, re.MULTILINE), again.stdout


def dry_run_requests(capsys, *options):
    code = run_job_script.main(["--dry-run", "--json", *map(str, options)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    requests = json.loads(captured.out)
    return requests if isinstance(requests, list) else [requests]


@pytest.mark.parametrize(
    ("region", "partition", "domain"),
    [
        ("us-east-1", "aws", "amazonaws.com"),
        ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
        ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
    ],
)
def test_requests_carry_the_partition_of_the_region_in_role_and_image(
    aws_call_recorder, tiny_config, capsys, monkeypatch, region, partition, domain
):
    (request,) = dry_run_requests(capsys, "--config", tiny_config, "--region", region)
    role = project.SAGEMAKER_ROLE  # a full ARN, when rendered with one, is kept as it is
    named = f"arn:{partition}:iam::{project.AWS_ACCOUNT_ID}:role/{role}"
    assert request["RoleArn"] == (role if role.startswith("arn:") else named)
    image_host = request["AlgorithmSpecification"]["TrainingImage"].split("/")[0]
    assert image_host.endswith(f".dkr.ecr.{region}.{domain}")
    # The custom image is pushed by scripts/build_and_push.sh to the same partition's domain.
    monkeypatch.setattr(project, "CONTAINER", "custom")
    custom = job_request.default_image_uri(region, "ml.m5.xlarge")
    assert custom.startswith(f"{project.AWS_ACCOUNT_ID}.dkr.ecr.{region}.{domain}/")
    assert aws_call_recorder == []


def test_a_role_arn_of_another_partition_is_refused_offline(aws_call_recorder, tiny_config, capsys):
    role = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"

    code = run_job_script.main(
        ["--dry-run", "--config", str(tiny_config), "--region", "cn-north-1", "--role", role]
    )

    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert code == 2 and "is an ARN of the aws partition, but cn-north-1 is in aws-cn" in line
    assert aws_call_recorder == []


def test_keep_alive_allows_what_the_api_allows():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    limit = model.shape_for("KeepAlivePeriodInSeconds").metadata["max"]
    assert job_options.KEEP_ALIVE_MAX == limit


def test_several_configs_keep_their_checkpoints_apart(aws_call_recorder, tmp_path, capsys):
    configs = [write_config(tmp_path / f"{name}.yaml") for name in ("exp001", "exp002")]

    requests = dry_run_requests(
        capsys, "--config", *configs, "--use-spot", "--checkpoint-uri", "s3://bucket/checkpoints/"
    )

    prefixes = [request["CheckpointConfig"]["S3Uri"] for request in requests]
    base = f"s3://bucket/checkpoints/{project.EXPERIMENT_NAME}"
    assert prefixes == [f"{base}-exp001/", f"{base}-exp002/"]  # exp1 never syncs exp10's files


@pytest.mark.parametrize(
    "options",
    [[], ["--use-spot"], ["--instance-count", "2"], ["--distributed", "--no-use-spot"]],
    ids=["on-demand", "spot", "two-hosts", "torchrun"],
)
def test_every_launch_of_a_config_keeps_its_checkpoints_under_the_same_folder(
    aws_call_recorder, tiny_config, capsys, monkeypatch, options
):
    first, second = [
        dry_run_requests(capsys, "--config", tiny_config, *options)[0] for _ in range(2)
    ]

    prefix = f"s3://{BUCKET}/{project.EXPERIMENT_NAME}-tiny/checkpoints/"
    assert first["CheckpointConfig"]["S3Uri"] == second["CheckpointConfig"]["S3Uri"] == prefix
    assert first["TrainingJobName"] not in prefix  # no job's own: the next launch finds it
    assert aws_call_recorder == []


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        (["--max-run", "2419201"], "--max-run: SageMaker runs a job at most 2419200 seconds"),
        (["--checkpoint-uri", "bucket/x"], "--checkpoint-uri: "),
        (["--use-spot", "--max-run", "600", "--max-wait", "300"], "--max-wait must be at least"),
    ],
)
def test_job_options_sagemaker_would_refuse_are_refused_offline(
    aws_call_recorder, tiny_config, capsys, option, refusal
):
    with pytest.raises(SystemExit) as exit:
        run_job_script.main(["--dry-run", "--config", str(tiny_config), *option])

    assert exit.value.code == 2
    assert refusal in capsys.readouterr().err.strip().splitlines()[-1]
    assert aws_call_recorder == []


def test_configs_whose_cut_names_would_collide_are_refused_before_any_aws_call(
    aws_call_recorder, tmp_path, capsys
):
    stem = "a-very-long-configuration-name-for-the-learning-rate-sweep"
    configs = [write_config(tmp_path / f"{stem}-{n}.yaml") for n in (1, 2)]

    code = run_job_script.main(["--dry-run", "--config", *map(str, configs)])

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "give the same job name prefix" in line
    assert aws_call_recorder == []


def test_an_instance_family_without_this_pytorch_image_is_refused_unless_an_image_is_given(
    aws_call_recorder, tiny_config, capsys, monkeypatch
):
    monkeypatch.setattr(project, "CONTAINER", "prebuilt")
    argv = ["--dry-run", "--config", str(tiny_config), "--instance-type", "ml.trn1.2xlarge"]

    code = run_job_script.main(argv)

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "pytorch-training-neuron:1.11.0" in line and "pass --image-uri" in line
    assert dry_run_requests(capsys, *argv, "--image-uri", "123456789012.dkr.ecr.x/mine:1")
    assert aws_call_recorder == []


def test_a_results_folder_that_cannot_be_made_is_refused_before_any_aws_call(
    aws_call_recorder, tiny_config, tmp_path, capsys
):
    occupied = tmp_path / "results"
    occupied.write_text("my notes")

    with pytest.raises(SystemExit) as exit:
        run_job_script.main(["--config", str(tiny_config), "--out-dir", str(occupied / "x")])

    assert exit.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # (prog is pytest's here)
    assert last_line.endswith(f"error: argument --out-dir: {occupied} is a file, not a folder")
    assert occupied.read_text() == "my notes" and aws_call_recorder == []


# k-fold cross-validation as jobs: one per fold, one cost bound, the CV assembled as locally.


def test_folds_dry_run_shows_a_request_per_fold_and_one_cost_bound(
    aws_call_recorder, tiny_config, tmp_path, capsys
):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})

    requests = dry_run_requests(capsys, "--config", tiny_config, "--folds", 3)

    assert [request["HyperParameters"]["fold"] for request in requests] == ["1", "2", "3"]
    assert {request["HyperParameters"]["folds"] for request in requests} == {"3"}
    prefixes = {request["CheckpointConfig"]["S3Uri"] for request in requests}
    assert len(prefixes) == 3  # each fold resumes from its own checkpoints
    names = [request["TrainingJobName"] for request in requests]
    assert all(f"-tiny-fold{i}-" in name for i, name in zip((1, 2, 3), names, strict=True))
    assert aws_call_recorder == []


def test_folds_cost_bound_covers_every_fold_job(aws_call_recorder, tiny_config, tmp_path):
    job_cost.write_cache(REGION, {project.INSTANCE_TYPE: 0.736})
    options = ["--config", tiny_config, "--folds", "3", "--dry-run"]
    done = run_job(*options, env=environment(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 jobs: at most $2.21 in total" in done.stderr
    refused = run_job(*options[:-1], "--max-cost", "1", env=environment(), cwd=tmp_path)
    assert refused.returncode == 2
    assert "at most $2.21 is above --max-cost $1.00" in refused.stderr
    assert aws_call_recorder == []


@pytest.mark.slow
def test_fold_jobs_run_in_parallel_and_their_cv_is_assembled_as_locally(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    out = tmp_path / "results"
    done = run_job(
        "--config", tiny_config, "--folds", "3", "--out-dir", out, env=environment(), cwd=tmp_path
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert len(fake_sagemaker.requests) == 3
    (cv_folder,) = out.glob("*-tiny-cv")
    result = json.loads((cv_folder / "cv.json").read_text())
    assert (result["folds"], result["examples"]) == (3, 2000)
    rows = (cv_folder / "oof.csv").read_text().splitlines()
    assert len(rows) == 1 + 2000 and rows[0].startswith("id,fold,target,")
    name = next(key for key in result if key.startswith("cv_"))
    assert f"tiny: {name}={result[name]:.4f} folds=3 oof_examples=2000" in done.stdout
