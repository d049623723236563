"""Capacity and start-up options of a launch: --instance-fallback (SageMaker's instance
preferences: the first type with capacity runs the job and is billed), --max-pending
(MaxPendingTimeInSeconds), and a warm pool's caches and reuse with --keep-alive. Requests are
checked against botocore's CreateTrainingJob input shape; launches run against moto with
SageMaker played by tests/aws_fakes.py."""

import json
import re

import botocore.session
import pytest
from aws_fakes import REGION, run_script
from botocore.validate import ParamValidator
from test_run_job import RUN_JOB, environment, only_result, write_config

import container_entry
from launcher import job_cost, job_options, project

PRICES = {"ml.g5.xlarge": 1.408, "ml.g6.xlarge": 0.805, "ml.g4dn.xlarge": 0.736}
PRICES |= {"ml.m5.large": 0.115, project.INSTANCE_TYPE: 0.736}
FALLBACK = ["--instance-type", "ml.g5.xlarge", "--instance-fallback", "ml.g6.xlarge"]
FALLBACK += ["ml.g4dn.xlarge"]
IMAGE = ["--image-uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/image:latest"]


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config" / "tiny.yaml"
    path.parent.mkdir()
    return write_config(path)


def sagemaker_model():
    return botocore.session.get_session().get_service_model("sagemaker")


def dry_run(*options, cwd):
    return run_script([RUN_JOB, "--dry-run", *options], env=environment(), cwd=cwd)


def request_of(done):
    assert done.returncode == 0, done.stdout + done.stderr
    request = json.loads(done.stdout)
    shape = sagemaker_model().operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    return request


def test_the_limits_are_sagemakers():
    shapes = sagemaker_model().shape_for
    assert shapes("InstancePreferenceList").metadata["max"] == job_options.MAX_FALLBACKS + 1
    pending = shapes("MaxPendingTimeInSeconds").metadata
    assert (pending["min"], pending["max"]) == job_options.MAX_PENDING_RANGE


def test_a_fallback_becomes_instance_preferences_in_order_and_the_bound_takes_the_dearest(
    tmp_path,
):
    job_cost.write_cache(REGION, PRICES)

    done = dry_run(*FALLBACK, "--max-pending", "3600", "--json", cwd=tmp_path)

    request = request_of(done)
    resources = request["ResourceConfig"]
    assert "InstanceType" not in resources and resources["InstanceCount"] == 1
    assert [choice["InstanceType"] for choice in resources["InstancePreferences"]] == [
        "ml.g5.xlarge",
        "ml.g6.xlarge",
        "ml.g4dn.xlarge",
    ]
    assert request["StoppingCondition"]["MaxPendingTimeInSeconds"] == 3600
    bound = job_cost.dollars(1.408)  # an hour of ml.g5.xlarge, whichever is selected
    assert f"cost: at most {bound} (the dearest of ml.g5.xlarge, ml.g6.xlarge, " in done.stderr
    summary = dry_run(*FALLBACK, "--max-pending", "3600", cwd=tmp_path).stdout
    assert "1 x ml.g5.xlarge else ml.g6.xlarge else ml.g4dn.xlarge (on-demand)" in summary
    assert "waiting for capacity at most 3600 s" in summary


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ([*FALLBACK, "--use-spot"], "--instance-fallback works on-demand only"),
        (
            ["--instance-fallback", *(f"ml.g5.{size}xlarge" for size in ["", 2, 4, 8, 12])],
            "--instance-fallback: at most 4 types",
        ),
        (["--instance-fallback", project.INSTANCE_TYPE], "each type once"),
        (
            ["--instance-type", "ml.m5.large", "--max-pending", "3600"],
            "--max-pending: SageMaker applies it to GPU and Trainium types",
        ),
        (["--max-pending", "600"], "--max-pending: must be from 1800 to 2419200"),
        (["--instance-fallback", "ml.m5.large"], "need different training images"),
        ([*FALLBACK, "--local"], "--max-pending: SageMaker's capacity, not --local's"),
        (["--keep-alive", "600", "--local"], "--keep-alive keeps a SageMaker instance warm"),
    ],
    ids=[
        "spot",
        "six types",
        "twice",
        "cpu pending",
        "short pending",
        "cpu and gpu",
        "local",
        "local warm pool",
    ],
)
def test_capacity_options_sagemaker_would_refuse_are_refused_here_in_one_line(
    options, said, tmp_path
):
    job_cost.write_cache(REGION, PRICES)

    if "--local" in options:  # not with --dry-run; refused before anything runs all the same
        done = run_script([RUN_JOB, *options], env=environment(), cwd=tmp_path)
    else:
        done = dry_run(*options, cwd=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error" in line]
    assert said in line


def test_each_fallback_type_needs_its_quota_before_a_launch(aws, aws_stand_ins, tmp_path):
    job_cost.write_cache(REGION, PRICES)
    aws_stand_ins.values["ml.m5.large for training job usage"] = 0
    types = ["--instance-type", "ml.g4dn.xlarge", "--instance-fallback", "ml.m5.large", *IMAGE]

    done = run_script([RUN_JOB, *types], env=environment(), cwd=tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "quota ml.m5.large for training job usage: 0" in done.stderr
    assert "nothing was launched" in done.stderr
    assert not aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]


def test_the_job_runs_and_is_billed_on_the_type_sagemaker_selected(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    job_cost.write_cache(REGION, PRICES)
    fake_sagemaker.capacity = {"ml.g6.xlarge"}  # none of ml.g5.xlarge now
    out = tmp_path / "results"

    done = run_script(
        [RUN_JOB, "--poll-seconds", "0.2", *FALLBACK, "--config", tiny_config, "--out-dir", out],
        env=environment(),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    _, exp = only_result(out)
    assert exp["instance_type"] == "ml.g6.xlarge"
    resources = fake_sagemaker.aws.client("sagemaker").describe_training_job(
        TrainingJobName=exp["job_name"]
    )["ResourceConfig"]  # as DescribeTrainingJob has it: botocore's shape
    report = ParamValidator().validate(resources, sagemaker_model().shape_for("ResourceConfig"))
    assert not report.has_errors(), report.generate_report()
    assert resources["SelectedInstanceType"] == "ml.g6.xlarge"
    assert exp["instance_preferences"] == ["ml.g5.xlarge", "ml.g6.xlarge", "ml.g4dn.xlarge"]
    assert exp["price_usd_per_hour"] == 0.805
    assert exp["cost_usd"] == pytest.approx(exp["billable_seconds"] * 0.805 / 3600)
    log = (out / exp["results_dir"].rsplit("/", 1)[-1] / "logs.txt").read_text()
    assert "device=" in log  # the container ran on what it was told: the selected type


def test_a_warm_pool_job_caches_pip_and_torch_downloads_in_the_persistent_cache(tmp_path):
    job_cost.write_cache(REGION, PRICES)

    environment_ = request_of(dry_run("--keep-alive", "600", "--json", cwd=tmp_path))["Environment"]
    cold = request_of(dry_run("--json", cwd=tmp_path))["Environment"]

    assert environment_["WARM_POOL_CACHE"] == job_options.WARM_POOL_CACHE
    assert environment_["PIP_CACHE_DIR"] == f"{job_options.WARM_POOL_CACHE}/pip"
    assert environment_["TORCH_HOME"] == f"{job_options.WARM_POOL_CACHE}/torch"
    assert job_options.WARM_POOL_CACHE == "/opt/ml/sagemaker/warmpoolcache"
    assert not {"WARM_POOL_CACHE", "PIP_CACHE_DIR", "TORCH_HOME"} & set(cold)


@pytest.mark.parametrize(
    ("in_virtualenv", "user_site", "into_the_cache"),
    [(False, True, True), (True, True, False), (False, False, False)],
    ids=["image python", "virtualenv", "user site off"],
)
def test_on_a_warm_pool_packages_install_into_its_cache_where_python_finds_them(
    in_virtualenv, user_site, into_the_cache
):
    job = {"PATH": "/usr/bin", **job_options.warm_pool_caches()}

    environment = container_entry.warm_pool_environment(job, in_virtualenv, user_site)

    if into_the_cache:  # pip --user installs there; Python puts its site-packages on sys.path
        assert environment == {
            **job,
            "PYTHONUSERBASE": f"{job_options.WARM_POOL_CACHE}/python",
            "PIP_USER": "1",
        }
    else:  # pip would refuse a --user install there: its download cache alone
        assert environment == job
    cold = {"PATH": "/usr/bin"}
    assert container_entry.warm_pool_environment(cold, False, True) == cold


def warm_job(aws, name, role, instance_type=project.INSTANCE_TYPE, status="Available"):
    """A finished job of this project whose instance waits in a warm pool."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    aws.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn=role,
        OutputDataConfig={"S3OutputPath": "s3://bucket/out"},
        ResourceConfig={
            "InstanceType": instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            "KeepAlivePeriodInSeconds": 600,
        },
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=[{"Key": "project", "Value": project.PROJECT_SLUG}],
    )
    job = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[name]
    job.warm_pool_status = {"Status": status}


def test_a_launch_says_whether_it_reuses_a_warm_pool(
    fake_sagemaker, uploaded_dataset, tiny_config, tmp_path
):
    job_cost.write_cache(REGION, PRICES)
    role = f"arn:aws:iam::{project.AWS_ACCOUNT_ID}:role/{project.SAGEMAKER_ROLE.split('/')[-1]}"
    warm_job(fake_sagemaker.aws, "other-type", role, instance_type="ml.g5.xlarge")
    warm_job(fake_sagemaker.aws, "taken", role, status="InUse")
    launch = [RUN_JOB, "--config", tiny_config, "--keep-alive", "600", "--no-wait"]
    launch += ["--out-dir", tmp_path / "results"]

    first = run_script(launch, env=environment(), cwd=tmp_path)
    warm_job(fake_sagemaker.aws, "left-warm", role)
    second = run_script(launch, env=environment(), cwd=tmp_path)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    said = re.search(
        r"^warm pool: none free for 1 x (\S+); this job starts one", first.stderr, re.MULTILINE
    )
    assert said and said.group(1) == project.INSTANCE_TYPE, first.stderr
    assert "warm pool: reuses the instance left-warm left warm: no provisioning" in second.stderr
