"""scripts/cleanup.py against moto: it lists what this project left running or stored, asks, then
stops its jobs, releases its warm pools, stops its tuning jobs and deletes its S3 prefixes (and its
ECR repository); another project's things stay. moto lacks StopTrainingJob, UpdateTrainingJob and
StopHyperParameterTuningJob: stand-ins answer them with the members of botocore's model."""

import json
import os

import botocore.session
import pytest
from aws_fakes import PROJECT_ROOT, REGION, run_script

from launcher import aws_env, project
from launcher import cleanup as cleanup_module

CLEANUP = PROJECT_ROOT / "scripts" / "cleanup.py"
MOTO_ACCOUNT = "123456789012"
BUCKET = aws_env.default_bucket(REGION)
# Each stand-in's answer: the output members botocore's SageMaker model gives the operation.
ANSWERS = {
    "StopTrainingJob": lambda name: {},
    "UpdateTrainingJob": lambda name: {
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{MOTO_ACCOUNT}:training-job/{name}"
    },
    "StopHyperParameterTuningJob": lambda name: {},
}


def test_the_stand_ins_answer_with_the_members_of_botocores_model():
    model = botocore.session.get_session().get_service_model("sagemaker")
    for operation, answer in ANSWERS.items():
        shape = model.operation_model(operation).output_shape
        assert set(answer("job")) == set(shape.members if shape else ()), operation


@pytest.fixture
def stand_ins(aws, monkeypatch):
    """The calls moto lacks, applied to its backend as SageMaker applies them; each recorded."""
    from moto.sagemaker.responses import SageMakerResponse

    calls = []

    def stop_training_job(self):
        name = json.loads(self.body)["TrainingJobName"]
        calls.append(("StopTrainingJob", name))
        self.sagemaker_backend.training_jobs[name].training_job_status = "Stopping"
        return json.dumps(ANSWERS["StopTrainingJob"](name))

    def update_training_job(self):
        request = json.loads(self.body)
        name = request["TrainingJobName"]
        calls.append(("UpdateTrainingJob", name, request["ResourceConfig"]))
        job = self.sagemaker_backend.training_jobs[name]
        job.warm_pool_status = {"Status": "Terminated"}
        return json.dumps(ANSWERS["UpdateTrainingJob"](name))

    def stop_hyper_parameter_tuning_job(self):
        name = json.loads(self.body)["HyperParameterTuningJobName"]
        calls.append(("StopHyperParameterTuningJob", name))
        tuning = self.sagemaker_backend.hyper_parameter_tuning_jobs[name]
        tuning.hyper_parameter_tuning_job_status = "Stopping"
        return json.dumps(ANSWERS["StopHyperParameterTuningJob"](name))

    for method in (stop_training_job, update_training_job, stop_hyper_parameter_tuning_job):
        monkeypatch.setattr(SageMakerResponse, method.__name__, method, raising=False)
    return calls


def training_job(aws, name, slug=project.PROJECT_SLUG, status="InProgress", warm_pool=None):
    from moto.sagemaker.models import sagemaker_backends

    aws.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{MOTO_ACCOUNT}:role/Role",
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
        ResourceConfig={
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            "KeepAlivePeriodInSeconds": 600,
        },
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
        Tags=[{"Key": "project", "Value": slug}],
    )
    job = sagemaker_backends[MOTO_ACCOUNT][REGION].training_jobs[name]
    job.training_job_status = status  # moto completes a job at once; SageMaker's states here
    if warm_pool:
        job.warm_pool_status = {"Status": warm_pool}


def tuning_job(aws, name, slug):
    from moto.sagemaker.models import sagemaker_backends

    aws.client("sagemaker").create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
            "RoleArn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/Role",
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/out"},
            "ResourceConfig": {
                "InstanceType": "ml.m5.xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
        Tags=[{"Key": "project", "Value": slug}],
    )
    tuning = sagemaker_backends[MOTO_ACCOUNT][REGION].hyper_parameter_tuning_jobs[name]
    tuning.hyper_parameter_tuning_job_status = "InProgress"


@pytest.fixture
def leftovers(aws, stand_ins):
    """A class's end: this project's running job, warm pool, finished job, tuning job, dataset
    and job folders on S3; another project's running job and S3 folder."""
    training_job(aws, "mine-running")
    training_job(aws, "mine-warm", status="Completed", warm_pool="Available")
    training_job(aws, "mine-done", status="Completed", warm_pool="Terminated")
    training_job(aws, "theirs-running", slug="another-project")
    tuning_job(aws, "mine-tuning", project.PROJECT_SLUG)
    tuning_job(aws, "theirs-tuning", "another-project")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    keys = ["dataset/train.csv", f"{project.EXPERIMENT_NAME}-exp001/job-1/output/model.tar.gz"]
    keys += ["another-project-exp001/job-9/output/model.tar.gz", "dataset-v2/train.csv"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"12345")
    if project.CONTAINER == "custom":
        aws.client("ecr").create_repository(repositoryName=project.PROJECT_SLUG)
    return stand_ins


def cleanup(*options, cwd):
    return run_script([CLEANUP, *options], env=dict(os.environ), cwd=cwd)


def remaining_keys(aws):
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_it_lists_this_projects_leftovers_and_without_a_yes_touches_nothing(
    aws, leftovers, tmp_path
):
    done = cleanup(cwd=tmp_path)  # stdin is no terminal: it cannot ask

    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()
    assert listed[0] == f"{project.PROJECT_SLUG} in {REGION}:"
    names = [line.split()[2].rstrip(":") for line in listed[1:-1]]
    assert names == [
        "mine-running",
        "mine-warm",
        "mine-tuning",
        f"s3://{BUCKET}/dataset/",
        f"s3://{BUCKET}/{project.EXPERIMENT_NAME}-exp001/",
        *([project.PROJECT_SLUG] if project.CONTAINER == "custom" else []),
    ]
    assert "1 object(s)" in listed[-2 if project.CONTAINER != "custom" else -3] and listed[
        -1
    ].startswith("nothing stopped or deleted")
    assert leftovers == [] and len(remaining_keys(aws)) == 4


def test_yes_stops_releases_and_deletes_what_is_this_projects_only(aws, leftovers, tmp_path):
    done = cleanup("--yes", "--keep-data", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert leftovers == [
        ("StopTrainingJob", "mine-running"),
        ("UpdateTrainingJob", "mine-warm", {"KeepAlivePeriodInSeconds": 0}),
        ("StopHyperParameterTuningJob", "mine-tuning"),
    ]
    assert remaining_keys(aws) == [
        "another-project-exp001/job-9/output/model.tar.gz",
        "dataset-v2/train.csv",  # another folder than dataset/
        "dataset/train.csv",  # --keep-data
    ]
    assert f"deleted S3 prefix s3://{BUCKET}/{project.EXPERIMENT_NAME}-exp001/" in done.stdout
    if project.CONTAINER == "custom":
        assert aws.client("ecr").describe_repositories()["repositories"] == []
    again = cleanup("--yes", cwd=tmp_path)  # what was stopped is no longer running
    assert again.returncode == 0 and remaining_keys(aws) == [
        "another-project-exp001/job-9/output/model.tar.gz",
        "dataset-v2/train.csv",
    ]


def test_a_prefix_is_counted_and_deleted_a_listing_page_at_a_time(aws, monkeypatch):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for number in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"{project.EXPERIMENT_NAME}-exp001/{number}", Body=b"1")
    monkeypatch.setattr(cleanup_module, "DELETE_BATCH", 2)  # pages of 2: 3 pages, 3 deletes
    deletes = []
    s3.meta.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: deletes.append(len(params["Delete"]["Objects"])),
    )

    (leftover,) = cleanup_module.s3_prefixes(s3, BUCKET)
    leftover.remove()

    assert leftover.detail.startswith("5 object(s)")
    assert deletes == [2, 2, 1] and remaining_keys(aws) == []


def test_nothing_left_says_so(aws, stand_ins, tmp_path):
    done = cleanup("--yes", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == f"nothing of {project.PROJECT_SLUG} is running or stored in {REGION}"
    )
