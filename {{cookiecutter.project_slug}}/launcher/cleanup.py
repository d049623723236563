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
    """dataset/ and <experiment>-*/ (jobs' code, models, outputs and checkpoints) in the bucket:
    counted page by page, and deleted page by page (nothing holds a prefix's every key)."""
    folders = []
    try:
        # The bucket's top-level folders that start so (a page lists at most 1,000 of them).
        for start in ("dataset", f"{project.EXPERIMENT_NAME}-"):
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=start, Delimiter="/"
            )
            folders += [
                found["Prefix"] for page in pages for found in page.get("CommonPrefixes", [])
            ]
    except Exception as error:
        if job_checks.error_code(error) == "NoSuchBucket":
            return
        raise
    # dataset-v2/ is not this project's dataset/
    folders = [name for name in folders if name == "dataset/" or not name.startswith("dataset")]
    for prefix in folders:
        count, size = 0, 0
        for contents in prefix_pages(s3, bucket, prefix):
            count += len(contents)
            size += sum(item["Size"] for item in contents)
        yield Leftover(
            "S3 prefix",
            f"s3://{bucket}/{prefix}",
            f"{count} object(s), {size / 1e6:,.1f} MB",
            lambda prefix=prefix: delete_prefix(s3, bucket, prefix),
        )


def prefix_pages(s3, bucket, prefix):
    """The objects under a prefix, a listing page (at most DELETE_BATCH) at a time."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": DELETE_BATCH}
    )
    for page in pages:
        yield page.get("Contents", [])


def delete_prefix(s3, bucket, prefix):
    """Every object under the prefix, a page at a time (a page fits one DeleteObjects call)."""
    for contents in prefix_pages(s3, bucket, prefix):
        if not contents:
            continue
        batch = [{"Key": item["Key"]} for item in contents]
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
