"""Where things live on AWS, shared by upload_dataset.py and run_job.py.

Defaults are the values this project was generated with (launcher/project.py); the AWS_REGION
environment variable overrides the region, as it does for the AWS CLI.
"""

import argparse
import os
import re
import sys
from pathlib import Path, PurePosixPath

from launcher import project

DATASET_KEY = "dataset"  # s3://<bucket>/dataset[/<prefix>] holds the training channel
REGION_NAME = r"[a-z]{2,4}(-[a-z]+){1,2}-[0-9]{1,2}"
BUCKET_NAME = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"


def default_region():
    return os.environ.get("AWS_REGION") or project.AWS_REGION


def region_name(text):
    """An argparse type: the shape of an AWS region name (e.g. us-east-1, ap-northeast-1)."""
    if not re.fullmatch(REGION_NAME, text, re.ASCII):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an AWS region name (e.g. us-east-1, ap-northeast-1)"
        )
    return text


def bucket_name(text):
    """An argparse type: an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)."""
    if not re.fullmatch(BUCKET_NAME, text, re.ASCII):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit)"
        )
    return text


def add_region_option(parser):
    parser.add_argument(
        "--region",
        type=region_name,
        default=default_region(),
        help=f"AWS region (default: $AWS_REGION, else {project.AWS_REGION})",
    )


def default_bucket(region):
    """The bucket SageMaker itself uses by default: sagemaker-<region>-<account>."""
    return f"sagemaker-{region}-{project.AWS_ACCOUNT_ID}"


def dataset_uri(bucket, prefix=""):
    key = "/".join(part for part in [DATASET_KEY, prefix.strip("/")] if part)
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri):
    """s3://bucket/key/prefix -> ("bucket", "key/prefix"); ValueError names the problem."""
    match = re.fullmatch(rf"s3://({BUCKET_NAME})(?:/(.*))?", uri, re.ASCII)
    if not match:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://<bucket>/<prefix>)")
    return match.group(1), (match.group(2) or "").strip("/")


def partition(region):
    """The AWS partition of a region (aws, aws-cn, aws-us-gov, ...), as botocore knows them."""
    import boto3

    try:
        return boto3.Session().get_partition_for_region(region)
    except Exception:  # a region botocore does not know yet: the commercial partition
        return "aws"


def dns_suffix(region):
    """The partition's domain for service hosts: amazonaws.com, amazonaws.com.cn, ..."""
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    return resolver.get_partition_dns_suffix(partition(region)) or "amazonaws.com"


def boto_session(region):
    import boto3  # here, so that --help and config checks stay fast

    return boto3.Session(region_name=region)


SETUP_FIX = (
    "set up credentials with the AWS CLI (`aws configure sso`, or `aws configure` for access "
    "keys; install: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
)
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
UNKNOWN_KEY_CODES = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}


def error_message(error):
    """One line a user can act on, for the errors boto3 raises."""
    from botocore import exceptions

    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    login = f"aws sso login --profile {profile}" if profile else "aws sso login"
    if isinstance(error, exceptions.ProfileNotFound):
        name = error.kwargs.get("profile", profile)
        return (
            f"the AWS profile {name!r} (AWS_PROFILE) is not in ~/.aws/config or "
            f"~/.aws/credentials: `aws configure list-profiles` lists the ones there are; unset "
            f"AWS_PROFILE for the default, or {SETUP_FIX}"
        )
    if isinstance(error, exceptions.NoCredentialsError):
        return f"no AWS credentials found: {SETUP_FIX}; or set AWS_PROFILE to a profile you have"
    if isinstance(error, (exceptions.SSOError, exceptions.TokenRetrievalError)):
        return f"the AWS SSO session has expired or is not signed in: run `{login}`"
    if isinstance(error, (exceptions.PartialCredentialsError, exceptions.CredentialRetrievalError)):
        return f"the AWS credentials are incomplete or unreadable ({error}): {SETUP_FIX}"
    if isinstance(error, exceptions.NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(error, (exceptions.ConnectionError, exceptions.HTTPClientError)):
        return f"cannot reach AWS ({error}); check the network (or proxy) and the region"
    if isinstance(error, exceptions.ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "?")
        if code in EXPIRED_CODES:
            return f"the AWS credentials have expired: run `{login}` or renew the keys"
        if code in UNKNOWN_KEY_CODES:
            return f"AWS does not accept these credentials ({code}): check the keys; {SETUP_FIX}"
        operation = getattr(error, "operation_name", "AWS call")
        return f"{operation} failed: {code}: {details.get('Message', error)}"
    return f"{type(error).__name__}: {error}"


def is_aws_error(error):
    """Whether botocore raised `error` (configuration, credentials, network, or an API answer)."""
    if "botocore.exceptions" not in sys.modules:  # nothing imported botocore: not its error
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(error, (BotoCoreError, ClientError))


def run_script(main):
    """A script's main() with an AWS error it did not handle (a missing profile, expired
    credentials, no network) ended in one line that says the fix, exit code 1, not a traceback."""
    try:
        return main()
    except Exception as error:
        if not is_aws_error(error):
            raise
        print(f"{Path(sys.argv[0]).name}: error: {error_message(error)}", file=sys.stderr)
        return 1


def download_prefix(s3_client, uri, destination):
    """Copy every object under an S3 prefix into a folder, keeping relative paths.

    Keys that would land outside the folder (absolute, or with ..) are refused.
    """
    bucket, prefix = split_s3_uri(uri)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    listed = s3_client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
    )
    count = 0
    for page in listed:
        for item in page.get("Contents", []):
            relative = PurePosixPath(item["Key"][len(prefix) :].lstrip("/"))
            if not relative.parts or ".." in relative.parts or item["Key"].endswith("/"):
                continue
            target = destination.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(bucket, item["Key"], str(target))
            count += 1
    if count == 0:
        raise FileNotFoundError(f"nothing found under {uri}")
    return count
