"""What this project left running or stored on AWS, and how each is stopped or deleted: the
library of scripts/cleanup.py.

Jobs are found by their `project` tag (every job run_job.py and tune.py launch carries it; tuning
trials carry their tuning job's), stored data by the S3 prefixes the project writes in its bucket
(dataset/ and <experiment>-*/), and a custom image by its ECR repository's name.
"""

from collections.abc import Callable
from dataclasses import dataclass

from launcher import job_checks, job_cost, project

DELETE_BATCH = 1000  # keys per DeleteObjects call, S3's limit


@dataclass
class Leftover:
    kind: str  # what it is: "running job", "warm pool", "tuning job", "S3 prefix", "ECR image"
    name: str
    detail: str  # why it matters: what it bills or holds
    remove: Callable[[], None]  # stops or deletes it


def find(session, bucket):
    """Every Leftover of this project, running things first."""
    sagemaker = session.client("sagemaker")
    return [
        *training_jobs(sagemaker, job_cost.project_jobs(session)),
        *tuning_jobs(sagemaker),
        *s3_prefixes(session.client("s3"), bucket),
        *(ecr_images(session.client("ecr")) if project.CONTAINER == "custom" else []),
    ]


def training_jobs(sagemaker, jobs):
    for job in jobs:
        name = job["TrainingJobName"]
        if job.get("TrainingJobStatus") == "InProgress":
            yield Leftover(
                "running job",
                name,
                "bills until it ends; stopped, it saves a checkpoint",
                lambda name=name: sagemaker.stop_training_job(TrainingJobName=name),
            )
        elif (job.get("WarmPoolStatus") or {}).get("Status") == "Available":
            keep_alive = job.get("ResourceConfig", {}).get("KeepAlivePeriodInSeconds")
            yield Leftover(
                "warm pool",
                name,
                f"its instance bills while it waits (kept {keep_alive} s after the job)",
                # A keep-alive of 0 ends the warm pool now (UpdateTrainingJob).
                lambda name=name: sagemaker.update_training_job(
                    TrainingJobName=name, ResourceConfig={"KeepAlivePeriodInSeconds": 0}
                ),
            )


def tuning_jobs(sagemaker):
    pages = sagemaker.get_paginator("list_hyper_parameter_tuning_jobs").paginate(
        StatusEquals="InProgress"
    )
    for page in pages:
        for tuning in page["HyperParameterTuningJobSummaries"]:
            tags = sagemaker.list_tags(ResourceArn=tuning["HyperParameterTuningJobArn"])["Tags"]
            if {"Key": "project", "Value": project.PROJECT_SLUG} not in tags:
                continue
            name = tuning["HyperParameterTuningJobName"]
            yield Leftover(
                "tuning job",
                name,
                "starts and bills trials until it ends",
                lambda name=name: sagemaker.stop_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=name
                ),
            )


def s3_prefixes(s3, bucket):
    """dataset/ and <experiment>-*/ (jobs' code, models, outputs and checkpoints) in the bucket."""
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    except Exception as error:
        if job_checks.error_code(error) == "NoSuchBucket":
            return
        raise
    folders = [found["Prefix"] for found in listed.get("CommonPrefixes", [])]
    mine = [
        name
        for name in folders
        if name == "dataset/" or name.startswith(f"{project.EXPERIMENT_NAME}-")
    ]
    for prefix in mine:
        keys, size = [], 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                keys.append(item["Key"])
                size += item["Size"]
        yield Leftover(
            "S3 prefix",
            f"s3://{bucket}/{prefix}",
            f"{len(keys)} object(s), {size / 1e6:,.1f} MB",
            lambda keys=keys: delete_keys(s3, bucket, keys),
        )


def delete_keys(s3, bucket, keys):
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise RuntimeError(f"{first['Key']}: {first['Code']}: {first['Message']}")


def ecr_images(ecr):
    try:
        ecr.describe_repositories(repositoryNames=[project.PROJECT_SLUG])
    except Exception as error:
        if job_checks.error_code(error) == "RepositoryNotFoundException":
            return
        raise
    yield Leftover(
        "ECR image",
        project.PROJECT_SLUG,
        "the training image scripts/build_and_push.sh pushed (storage billed)",
        lambda: ecr.delete_repository(repositoryName=project.PROJECT_SLUG, force=True),
    )
