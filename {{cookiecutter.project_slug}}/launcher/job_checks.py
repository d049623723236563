"""What a training job needs from the AWS account, checked one by one before money is spent:
scripts/doctor.py runs them all; run_job.py runs the cheap ones before a launch.

Each check returns a Check: passed (True), failed (False, with the fix on one line), a warning
(None: it does not stop a job of the project's defaults), or could not be checked (None, saying
why: missing permissions, say).
"""

import json
import shutil
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from launcher import aws_env, job_cost, project

TRUSTED_SERVICE = "sagemaker.amazonaws.com"
TRUST_STATEMENT = {
    "Effect": "Allow",
    "Principal": {"Service": TRUSTED_SERVICE},
    "Action": "sts:AssumeRole",
}
# Service Quotas' names of the instance quotas a training job uses (service code "sagemaker").
QUOTA_USAGES = {
    "on-demand": "training job usage",
    "spot": "spot training job usage",
    "warm pool": "training warm pool usage",
}
DATASET_KEYS_LISTED = 10_000  # enough to see a dataset's layout without listing all of it


@dataclass
class Check:
    name: str
    passed: bool | None  # None: a warning, or could not be checked
    detail: str  # what was found
    fix: str = ""  # failed or warning: what to do, on one line

    @property
    def mark(self):
        return {True: "✓", False: "✗", None: "!"}[self.passed]

    def lines(self):
        shown = [f"{self.mark} {self.name}: {self.detail}"]
        return shown + ([f"    fix: {self.fix}"] if self.fix and self.passed is not True else [])


def quota_name(instance_type, usage):
    """The Service Quotas name, e.g. "ml.g4dn.xlarge for spot training job usage"."""
    return f"{instance_type} for {QUOTA_USAGES[usage]}"


def error_code(error):
    """The code of an AWS error ("NoSuchEntity", "404"), or None for any other exception."""
    return getattr(error, "response", {}).get("Error", {}).get("Code")


def unchecked(name, error):
    return Check(name, None, f"could not check ({aws_env.error_message(error)})")


def credentials(session):
    try:
        identity = session.client("sts").get_caller_identity()
    except Exception as error:  # the message says the fix
        return Check("credentials", False, aws_env.error_message(error))
    if identity["Account"] != project.AWS_ACCOUNT_ID:
        return Check(
            "credentials",
            False,
            f"{identity['Arn']} is in account {identity['Account']}, not this project's "
            f"{project.AWS_ACCOUNT_ID}",
            f"use credentials of account {project.AWS_ACCOUNT_ID} (AWS_PROFILE)",
        )
    return Check("credentials", True, f"{identity['Arn']} in account {identity['Account']}")


def region(session, name):
    available = session.get_available_regions("sagemaker", aws_env.partition(name))
    if name not in available:
        return Check(
            "region",
            False,
            f"SageMaker is not in {name}",
            "pass --region or set AWS_REGION to one of: " + ", ".join(available[:8]) + ", ...",
        )
    return Check("region", True, name)


def trusts_sagemaker(policy):
    """Whether a role's trust policy lets sagemaker.amazonaws.com assume it."""
    if isinstance(policy, str):  # IAM sends it URL-encoded
        policy = json.loads(urllib.parse.unquote(policy))
    for statement in policy.get("Statement", []):
        services = statement.get("Principal", {}).get("Service", [])
        actions = statement.get("Action", [])
        services = [services] if isinstance(services, str) else services
        actions = [actions] if isinstance(actions, str) else actions
        if (
            statement.get("Effect") == "Allow"
            and TRUSTED_SERVICE in services
            and ("sts:AssumeRole" in actions or "sts:*" in actions)
        ):
            return True
    return False


def execution_role(session, role_arn):
    name = role_arn.rsplit("/", 1)[1]
    try:
        role = session.client("iam").get_role(RoleName=name)["Role"]
    except Exception as error:
        if error_code(error) == "NoSuchEntity":
            return Check(
                "execution role",
                False,
                f"no role {name}",
                "create it (IAM > Roles > SageMaker) or pass --role / SAGEMAKER_ROLE_ARN",
            )
        return unchecked("execution role", error)
    if not trusts_sagemaker(role["AssumeRolePolicyDocument"]):
        return Check(
            "execution role",
            False,
            f"{role['Arn']} does not trust {TRUSTED_SERVICE}",
            f"add to its trust policy: {json.dumps(TRUST_STATEMENT)}",
        )
    return Check("execution role", True, f"{role['Arn']} trusts {TRUSTED_SERVICE}")


def caller_principal(arn):
    """The IAM ARN whose policies apply to a caller (an assumed role's session -> the role)."""
    if ":assumed-role/" in arn:
        prefix, _, rest = arn.partition(":assumed-role/")
        return f"{prefix.replace(':sts:', ':iam:')}:role/{rest.split('/')[0]}"
    return arn


def role_can_be_passed(session, role_arn):
    name = "passing the role"
    try:
        caller = session.client("sts").get_caller_identity()["Arn"]
        result = session.client("iam").simulate_principal_policy(
            PolicySourceArn=caller_principal(caller),
            ActionNames=["iam:PassRole"],
            ResourceArns=[role_arn],
        )
    except Exception as error:
        return unchecked(name, error)
    (evaluation,) = result["EvaluationResults"]
    if evaluation["EvalDecision"] != "allowed":
        return Check(
            name,
            False,
            f"{caller} may not iam:PassRole {role_arn}",
            "allow iam:PassRole on the role to your user or role",
        )
    return Check(name, True, f"{caller} may pass {role_arn.rsplit('/', 1)[1]}")


def dataset(session, uri):
    """The bucket exists and the dataset prefix holds what src/data.py reads (its problems()
    answers for a copy of the listed names, empty files, without downloading anything)."""
    import data  # src/data.py, torch with it: only when checked

    name = "dataset"
    bucket, prefix = aws_env.split_s3_uri(uri)
    s3 = session.client("s3")
    upload = "python scripts/upload_dataset.py"
    try:
        s3.head_bucket(Bucket=bucket)
        keys, folder = [], f"{prefix}/" if prefix else ""
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        for page in pages:
            listed = [item["Key"][len(folder) :] for item in page.get("Contents", [])]
            keys += [key for key in listed if key and not key.endswith("/")]  # not folder markers
            if len(keys) >= DATASET_KEYS_LISTED:
                break
    except Exception as error:
        if error_code(error) in {"404", "NoSuchBucket"}:
            return Check(name, False, f"no bucket {bucket}", f"{upload} creates it")
        return unchecked(name, error)
    if not keys:
        return Check(name, False, f"nothing under {uri}", upload)
    with tempfile.TemporaryDirectory(prefix="dataset-names-") as names:
        for key in keys:
            path = Path(names, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        problems = data.problems(names)
    if problems:
        shown = "; ".join(problem.replace(names, uri.rstrip("/")) for problem in problems)
        return Check(name, False, shown, f"prepare dataset/ and {upload}")
    return Check(name, True, f"{uri} ({len(keys)} files)")


def training_image(session, region_name, instance_type):
    from launcher.job_request import default_image_uri

    name = "training image"
    try:
        uri = default_image_uri(region_name, instance_type)
    except ValueError as error:
        return Check(name, False, str(error), "choose another --instance-type or --image-uri")
    if project.CONTAINER != "custom":
        return Check(name, True, uri)
    repository = uri.split("/", 1)[1].split(":")[0]
    try:
        session.client("ecr").describe_images(
            repositoryName=repository, imageIds=[{"imageTag": "latest"}]
        )
    except Exception as error:
        if error_code(error) in {"RepositoryNotFoundException", "ImageNotFoundException"}:
            return Check(name, False, f"no {uri}", "bash scripts/build_and_push.sh")
        return unchecked(name, error)
    return Check(name, True, uri)


def usages(use_spot, keep_alive=0):
    """The quotas a job uses: spot's, or on-demand's (and the warm pool's with --keep-alive)."""
    if use_spot:
        return {"spot"}
    return {"on-demand", "warm pool"} if keep_alive else {"on-demand"}


def training_quotas(session, instance_type, required, instance_count=1):
    """Each of the instance type's training quotas; below instance_count fails those in
    `required` (usages()) and warns for the others."""
    names = {quota_name(instance_type, usage): usage for usage in QUOTA_USAGES}
    found = {}
    service_quotas = session.client("service-quotas")
    try:
        # Applied values first; a quota never changed is listed among the defaults only.
        for operation in ["list_service_quotas", "list_aws_default_service_quotas"]:
            for page in service_quotas.get_paginator(operation).paginate(ServiceCode="sagemaker"):
                for quota in page["Quotas"]:
                    if quota["QuotaName"] in names:
                        found.setdefault(names[quota["QuotaName"]], quota["Value"])
            if len(found) == len(names):
                break
    except Exception as error:
        return [unchecked(f"quotas of {instance_type}", error)]
    checks = []
    for usage in QUOTA_USAGES:
        name = f"quota {quota_name(instance_type, usage)}"
        value = found.get(usage)
        if value is None:
            checks.append(Check(name, None, "not listed for this account and region"))
        elif value >= instance_count:
            checks.append(Check(name, True, f"{value:g}"))
        else:
            fix = "ask for more in Service Quotas > Amazon SageMaker (a day or so)"
            shown = f"{value:g}, below the {instance_count} asked for" if value else "0"
            checks.append(Check(name, False if usage in required else None, shown, fix))
    return checks


def docker():
    name = "Docker (container=custom builds its image)"
    if not shutil.which("docker"):
        return Check(name, False, "docker is not installed", "install Docker, then start it")
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if done.returncode:
        return Check(name, False, "the Docker daemon does not answer", "start Docker")
    return Check(name, True, "the daemon answers")


def all_checks(session, region_name, role_arn, dataset_uri, instance_types, required):
    """Every check doctor.py runs, in order; the first failing one stops those that need it.
    instance_types: --instance-type and its fallbacks, each with its quotas."""
    instance_type = instance_types[0]
    checks = [region(session, region_name), credentials(session)]
    if checks[-1].passed is False:
        return checks
    checks += [execution_role(session, role_arn), role_can_be_passed(session, role_arn)]
    checks += [dataset(session, dataset_uri), training_image(session, region_name, instance_type)]
    for name in instance_types:
        checks += training_quotas(session, name, required)
    if project.CONTAINER == "custom":
        checks.append(docker())
    return checks


def before_launch(session, spec):
    """The cheap checks run_job.py runs before launching `spec` (job_request.JobSpec): the
    credentials, the role and the quotas, failed ones only. Those that cannot be checked (missing
    permissions) let the launch go ahead."""
    signed_in = credentials(session)
    if signed_in.passed is False:  # every other check would fail for the same reason
        return [signed_in]
    required = usages(spec.use_spot, spec.keep_alive)
    checks = [execution_role(session, spec.role_arn)]
    for instance_type in spec.instance_types:  # SageMaker may select any of them
        checks += training_quotas(session, instance_type, required, spec.instance_count)
    return [check for check in checks if check.passed is False]


def reusable_warm_pool(session, spec):
    """This project's warm pool a job of `spec` would reuse, or None: SageMaker hands an
    Available warm pool to a job of the same role, instance type and count, volume and network
    (none here: the SDK's 30 GB volume, no VPC, no KMS key)."""
    for job in job_cost.project_jobs(session):
        resources = job.get("ResourceConfig", {})
        if (
            (job.get("WarmPoolStatus") or {}).get("Status") == "Available"
            and job.get("RoleArn") == spec.role_arn
            and job_cost.instances(job) == (spec.instance_type, spec.instance_count)
            and resources.get("VolumeSizeInGB", 30) == 30
            and not resources.get("VolumeKmsKeyId")
            and not job.get("VpcConfig")
        ):
            return job
    return None


def warm_pool_line(session, spec):
    """What the launch says of warm pools with --keep-alive (None without: only a job that
    keeps its instance warm reuses one)."""
    if not spec.keep_alive:
        return None
    found = reusable_warm_pool(session, spec)
    if found is None:
        return (
            f"warm pool: none free for {spec.instance_count} x {spec.instance_type}; this job "
            f"starts one, kept {spec.keep_alive} s after it ends for the next"
        )
    return (
        f"warm pool: reuses the instance {found['TrainingJobName']} left warm: no provisioning, "
        "and src/requirements.txt's packages and torch's downloads are in its cache"
    )
