"""The CreateTrainingJob request for one config, built with SageMaker SDK v3's ModelTrainer.

A real launch, --dry-run and --local all build the request here: --dry-run prints it, --local
runs it on this machine, a launch sends it. Offline builds (dry run, local) make no AWS call.
"""

import contextlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from launcher import aws_env, project
from launcher.job_config import METRIC_DEFINITIONS
from launcher.project import ENTRY_SCRIPT, SOURCE_DIR

TRAINING_CHANNEL = "training"  # train.py reads it from SM_CHANNEL_TRAINING
SDK_CHANNELS = ("code", "sm_drivers")  # the SDK's own: src/ and its container drivers
CONTAINER_ENTRY = "container_entry.py"  # in src/: the container's PID 1
# S3 calls an offline build answers itself: uploading the source, whole or in parts.
OFFLINE_UPLOAD_CALLS = ["PutObject", "CreateMultipartUpload", "UploadPart"]
OFFLINE_UPLOAD_CALLS += ["CompleteMultipartUpload"]
# Left out of the source upload: caches and local clutter.
IGNORE_PATTERNS = [".env", ".git", "__pycache__", "*.pyc", ".DS_Store", ".ipynb_checkpoints"]


@dataclass
class JobSpec:
    """Everything about a job that is not a hyperparameter (run_job.py's options)."""

    region: str
    role_arn: str
    image_uri: str
    instance_type: str
    instance_count: int
    dataset_uri: str
    experiment: str
    # Capacity: types SageMaker tries after instance_type (instance preferences, in order), and
    # how long the job may wait for any (MaxPendingTimeInSeconds).
    instance_fallback: tuple = ()
    max_pending: int | None = None
    input_mode: str = "File"
    use_spot: bool = False
    max_run: int = 3600
    max_wait: int = 7200
    keep_alive: int = 0
    checkpoint_uri: str | None = None
    environment: dict = field(default_factory=dict)
    # Data-parallel: torchrun starts train.py once per GPU (or this many times) on every host.
    distributed: bool = False
    processes_per_host: int | None = None

    @property
    def instance_types(self):
        """The instance types the job may run on, the preferred first."""
        return (self.instance_type, *self.instance_fallback)


def data_row(channels):
    """A request's input channels but the SDK's own, as `training <- s3://...` (dry runs)."""
    return ", ".join(
        f"{channel['ChannelName']} <- {channel['DataSource']['S3DataSource']['S3Uri']}"
        for channel in channels
        if channel["ChannelName"] not in SDK_CHANNELS
    )


def tags_row(tags):
    """A request's tags as `key=value ...` (dry runs)."""
    return " ".join(f"{tag['Key']}={tag['Value']}" for tag in tags)


def role_arn(role, region):
    """A role name becomes an ARN in the rendered account and the region's partition (aws-cn in
    China, aws-us-gov in GovCloud); an ARN is kept as it is. ValueError: an ARN of another
    partition, which the region's SageMaker refuses."""
    partition = aws_env.partition(region)
    if not role.startswith("arn:"):
        return f"arn:{partition}:iam::{project.AWS_ACCOUNT_ID}:role/{role}"
    if role.split(":")[1] != partition:
        raise ValueError(
            f"--role {role} is an ARN of the {role.split(':')[1]} partition, but {region} is in "
            f"{partition}: give the role's name, or its arn:{partition}:iam::... ARN"
        )
    return role


PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def load_sdk():
    """Import the SageMaker SDK. Its import makes a default boto3 session
    (sagemaker.core.jumpstart.constants), which fails when AWS_PROFILE names a profile that is
    not there; its offline parts (image URIs, building a request) need no profile."""
    if "sagemaker.train.model_trainer" in sys.modules:
        return
    hidden = {name: os.environ.pop(name) for name in PROFILE_VARIABLES if name in os.environ}
    try:
        import sagemaker.train.model_trainer  # noqa: F401
    finally:
        os.environ.update(hidden)


def default_image_uri(region, instance_type):
    """The SageMaker PyTorch training image, or this project's own image on ECR."""
    if project.CONTAINER == "custom":
        # Where scripts/build_and_push.sh pushes: the partition's domain (.com.cn in China).
        registry = f"{project.AWS_ACCOUNT_ID}.dkr.ecr.{region}.{aws_env.dns_suffix(region)}"
        return f"{registry}/{project.PROJECT_SLUG}:latest"
    load_sdk()
    from sagemaker.core import image_uris

    uri = image_uris.retrieve(
        "pytorch",
        region=region,
        version=project.PYTORCH_VERSION,
        instance_type=instance_type,
        image_scope="training",
    )
    # For some families the table answers with another framework build (ml.trn1: a PyTorch
    # 1.11 Neuron image), which would fail the job only after it started and billed.
    if f":{project.PYTORCH_VERSION}-" not in uri:
        raise ValueError(
            f"for {instance_type} the SDK's image table gives {uri.rsplit('/', 1)[-1]}, not "
            f"PyTorch {project.PYTORCH_VERSION}; choose another --instance-type"
        )
    return uri


def online_session(region, bucket):
    from sagemaker.core.helper.session_helper import Session

    return Session(boto_session=aws_env.boto_session(region), default_bucket=bucket)


class RefusedAWSCall(RuntimeError):
    pass


@contextlib.contextmanager
def offline_session(region, bucket):
    """A SageMaker session that never reaches AWS, for --dry-run and --local.

    Uploads are copied into a temporary folder instead (`session.staged`: S3 URI -> folder), a
    direct S3 upload is answered as done, and any other API call the SDK would make is refused
    before it leaves this machine.
    """
    import boto3
    import botocore.session
    from botocore.awsrequest import AWSResponse

    load_sdk()
    from sagemaker.core.helper.session_helper import Session

    def refuse(event_name, **_):
        raise RefusedAWSCall(f"offline build tried an AWS call: {event_name}")

    class OfflineSession(Session):
        def default_bucket(self):
            return bucket

        def upload_data(self, path, bucket, key_prefix="data", **_):
            uri = f"s3://{bucket}/{key_prefix}"
            target = Path(staging, bucket, key_prefix)
            shutil.copytree(path, target, dirs_exist_ok=True)
            self.staged[uri] = target
            return uri

    def pretend_upload(params, model, **_):
        # The SDK's tuner uploads sourcedir.tar.gz with its own S3 client: nothing leaves here.
        # A big one goes in parts; each step gets the output members the next one reads
        # (names from botocore's S3 model; tests/test_tune.py checks them against it).
        answer = {
            "CreateMultipartUpload": {"UploadId": "offline-upload"},
            "UploadPart": {"ETag": '"offline-part"'},
            "CompleteMultipartUpload": {"ETag": '"offline-object"'},
        }.get(model.name, {})
        return AWSResponse(params["url"], 200, {}, None), answer

    # No profile and placeholder keys: whatever ~/.aws holds or lacks, this session sends nothing.
    core = botocore.session.get_session({"profile": (None, None, None, None)})
    core.set_credentials("offline", "offline")
    boto = boto3.Session(botocore_session=core, region_name=region)
    boto.events.register("before-call", refuse)
    for operation in OFFLINE_UPLOAD_CALLS:  # the more specific event wins over "before-call"
        boto.events.register(f"before-call.s3.{operation}", pretend_upload)
    with tempfile.TemporaryDirectory(prefix="sm-staging-") as staging:
        session = OfflineSession(boto_session=boto, default_bucket=bucket)
        session.staged = {}
        previous = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"  # validating the role needs IAM calls
        try:
            yield session
        finally:
            if previous is None:
                os.environ.pop("SAGEMAKER_VALIDATE_ROLE")
            else:
                os.environ["SAGEMAKER_VALIDATE_ROLE"] = previous


@contextlib.contextmanager
def uploaded_source():
    """A copy of src/ without what IGNORE_PATTERNS leaves out, for the SDK's tuner, which tars
    its source folder whole (SDK 1.27.0): trials then get exactly what a training job gets, and
    no .env leaves this machine."""
    with tempfile.TemporaryDirectory(prefix="sm-source-") as folder:
        copy = Path(folder, SOURCE_DIR.name)
        shutil.copytree(SOURCE_DIR, copy, ignore=shutil.ignore_patterns(*IGNORE_PATTERNS))
        yield copy


def model_trainer(
    spec, hyperparameters, base_job_name, tags, session, source_dir=None, checkpoints=True
):
    """SDK v3's ModelTrainer for a job: image, code (src/, or source_dir), compute, stopping,
    checkpoints (unless told not to)."""
    from sagemaker.core.shapes import InstancePreference
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        SourceCode,
        StoppingCondition,
        Tag,
    )

    with warnings.catch_warnings():  # the SDK imports its own deprecated module aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun

    return ModelTrainer(
        sagemaker_session=session,
        role=spec.role_arn,
        base_job_name=base_job_name,
        training_image=spec.image_uri,
        source_code=SourceCode(
            source_dir=str(source_dir or SOURCE_DIR),
            entry_script=ENTRY_SCRIPT,
            requirements="requirements.txt",
            ignore_patterns=IGNORE_PATTERNS,
        ),
        compute=Compute(
            # With a fallback, SageMaker takes the first of the list with capacity.
            instance_type=None if spec.instance_fallback else spec.instance_type,
            instance_preferences=(
                [InstancePreference(instance_type=name) for name in spec.instance_types]
                if spec.instance_fallback
                else None
            ),
            instance_count=spec.instance_count,
            enable_managed_spot_training=spec.use_spot or None,
            # A warm pool keeps the instance for the next job; SageMaker refuses it with spot.
            keep_alive_period_in_seconds=spec.keep_alive or None,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_run,
            max_wait_time_in_seconds=spec.max_wait if spec.use_spot else None,
            max_pending_time_in_seconds=spec.max_pending,
        ),
        # SageMaker syncs /opt/ml/checkpoints to S3 while the job runs and back into the next
        # job of the prefix (after a spot reclaim, or a relaunch of the config): train.py
        # resumes from it. Every job has one, as a stop keeps only what reached it.
        checkpoint_config=(
            CheckpointConfig(
                s3_uri=checkpoint_prefix(spec, base_job_name, session.default_bucket())
            )
            if checkpoints
            else None
        ),
        hyperparameters=hyperparameters,
        environment=spec.environment,
        tags=[Tag(key=key, value=value) for key, value in tags.items()],
        training_input_mode=spec.input_mode,
        # sm_train.sh then runs the SDK's torchrun_driver.py instead of basic_script_driver.py.
        distributed=(
            Torchrun(process_count_per_node=spec.processes_per_host) if spec.distributed else None
        ),
    )


def checkpoint_prefix(spec, base_job_name, bucket):
    """The S3 folder of a config's checkpoints: <--checkpoint-uri>/<experiment>-<config>/, by
    default beside the config's job folders. The same for every launch of the config, so the
    next one resumes where the last stopped; ending in /, so configs exp1 and exp10 never sync
    each other's files."""
    if spec.checkpoint_uri:
        return f"{spec.checkpoint_uri.rstrip('/')}/{base_job_name}/"
    return f"s3://{bucket}/{base_job_name}/checkpoints/"


def job_tags(spec, config_name):
    """Tags on every job and tuning job; activate `project` and `user` as cost allocation tags
    (Billing console) to see the bill per project and per person."""
    return {
        "project": project.PROJECT_SLUG,
        "user": launching_user(),
        "experiment": spec.experiment,
        "config": config_name,
    }


def launching_user():
    """Who launches: the login name, as a tag value may hold it (letters, digits, _.:/=+-@)."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        name = "unknown"
    return re.sub(r"[^\w.:/=+\-@ ]", "_", name)[:256] or "unknown"


def training_channel(spec):
    """The dataset channel; the SDK sets File on every channel it builds, ours has the mode."""
    from sagemaker.core.training.configs import Channel, DataSource, S3DataSource

    return Channel(
        channel_name=TRAINING_CHANNEL,
        data_source=DataSource(
            s3_data_source=S3DataSource(
                s3_data_type="S3Prefix",
                # A trailing / keeps the prefix a folder: dataset-v2/ beside it is not included.
                s3_uri=spec.dataset_uri.rstrip("/") + "/",
                s3_data_distribution_type="FullyReplicated",
            )
        ),
        input_mode=spec.input_mode,
    )


def relay_stops(algorithm):
    """Run the SDK's container command under src/container_entry.py, which as PID 1 passes
    SageMaker's SIGTERM (a stop, a spot reclaim) on to train.py; see that file for why."""
    from sagemaker.core.training.constants import SM_CODE_CONTAINER_PATH

    command = [*algorithm["ContainerEntrypoint"], *algorithm.get("ContainerArguments", [])]
    entry = f"{SM_CODE_CONTAINER_PATH}/{CONTAINER_ENTRY}"
    algorithm["ContainerEntrypoint"] = ["python3", entry, "--entry-script", ENTRY_SCRIPT, "--"]
    algorithm["ContainerArguments"] = command


def build_request(spec, config, base_job_name, session):
    """The CreateTrainingJob request (boto3's shape) for one config."""
    from sagemaker.core.training.configs import MetricDefinition

    trainer = model_trainer(
        spec, config.hyperparameters, base_job_name, job_tags(spec, config.name), session
    )
    trainer.with_metric_definitions(
        [
            MetricDefinition(name=metric["Name"], regex=metric["Regex"])
            for metric in METRIC_DEFINITIONS
        ]
    )
    # The SDK's own request builder (its AWS Batch support uses it the same way); train() would
    # send the same request but also wait and stream logs its own way.
    request = trainer._create_training_job_args(
        input_data_config=[training_channel(spec)], boto3=True
    )
    relay_stops(request["AlgorithmSpecification"])
    #% if cookiecutter.experiment_tracking == "mlflow"
    if "MLFLOW_TRACKING_URI" in request.get("Environment", {}):
        request["Environment"]["MLFLOW_RUN_NAME"] = request["TrainingJobName"]
    #% endif
    return request
