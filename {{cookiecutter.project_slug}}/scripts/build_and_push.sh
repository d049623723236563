#!/usr/bin/env bash
# Build docker/Dockerfile, push it to this project's ECR repository and print the image URI.
# Only bash builtins besides docker, aws and python, so it runs the same on any machine.
set -euo pipefail

USAGE="Usage: bash scripts/build_and_push.sh [TAG]

Builds docker/Dockerfile on the SageMaker PyTorch training image, pushes it to ECR
(creating the repository if missing) and prints the image URI on the last line.
TAG defaults to 'latest'. Needs docker, the AWS CLI and python with requirements.txt.

Environment overrides (default: the value this project was generated with):
  AWS_ACCOUNT_ID   account that owns the repository ({{ cookiecutter.aws_account_id }})
  AWS_REGION       region of the repository and the jobs ({{ cookiecutter.aws_region }})
  INSTANCE_TYPE    picks the cpu or gpu base image ({{ cookiecutter.instance_type }})
  PYTORCH_VERSION  version of the base image ({{ cookiecutter.pytorch_version }})
  ECR_REPOSITORY   repository name ({{ cookiecutter.project_slug }})
  PYTHON           python that has the SageMaker SDK (python3)"

ACCOUNT="${AWS_ACCOUNT_ID:-{{ cookiecutter.aws_account_id }}}"
REGION="${AWS_REGION:-{{ cookiecutter.aws_region }}}"
INSTANCE_TYPE="${INSTANCE_TYPE:-{{ cookiecutter.instance_type }}}"
PYTORCH_VERSION="${PYTORCH_VERSION:-{{ cookiecutter.pytorch_version }}}"
REPOSITORY="${ECR_REPOSITORY:-{{ cookiecutter.project_slug }}}"
PYTHON="${PYTHON:-python3}"

die() {
    printf 'ERROR: %s\n' "$1" >&2
    exit 1
}

step() {
    printf '==> %s\n' "$1" >&2
}

for arg in "$@"; do
    case "$arg" in
        -h | --help)
            printf '%s\n' "$USAGE"
            exit 0
            ;;
        -*) die "unknown option $arg (see --help)" ;;
    esac
done
[[ $# -le 1 ]] || die "expected at most one argument, the image tag (see --help)"
TAG="${1:-latest}"
[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
    die "invalid tag '$TAG': use letters, digits, _ . - (at most 128, not starting with . or -)"

[[ $ACCOUNT =~ ^[0-9]{12}$ ]] || die "invalid AWS_ACCOUNT_ID '$ACCOUNT': expected 12 digits"
# ECR's rule for repository names, stricter than the project folder name.
ecr_name='^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$'
[[ $REPOSITORY =~ $ecr_name ]] ||
    die "invalid ECR repository name '$REPOSITORY': set ECR_REPOSITORY (a-z0-9 joined by . _ - /)"

command -v docker >/dev/null || die "docker not found: install Docker (https://docs.docker.com/get-docker/)"
command -v aws >/dev/null || die "aws not found: install the AWS CLI v2 (https://aws.amazon.com/cli/)"

script_dir="${BASH_SOURCE[0]%/*}"
[[ $script_dir != "${BASH_SOURCE[0]}" ]] || script_dir=.
PROJECT_ROOT="$(cd "$script_dir/.." && pwd)"

# The SDK's image table is the one source of truth for the base image, so the image matches
# what a prebuilt-container job would run.
SDK_BASE_IMAGE='
import sys
try:
    from sagemaker.core import image_uris
except ImportError as error:
    sys.exit(f"ERROR: {error}: run python -m pip install -r requirements.txt (or set PYTHON)")
region, version, instance_type = sys.argv[1:]
try:
    print(image_uris.retrieve("pytorch", region=region, version=version,
                              instance_type=instance_type, image_scope="training"))
except ValueError as error:
    sys.exit(f"ERROR: no SageMaker PyTorch {version} training image for {instance_type} "
             f"in {region}: {error}")
'
base_image="$("$PYTHON" -c "$SDK_BASE_IMAGE" "$REGION" "$PYTORCH_VERSION" "$INSTANCE_TYPE")" ||
    exit 1
base_pattern='^([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.([a-z.]+)/pytorch-training:([^-]+)-(cpu|gpu)-(py[0-9]+)$'
[[ $base_image =~ $base_pattern ]] ||
    die "base image $base_image does not fit docker/Dockerfile's FROM line; build it by hand"
base_registry="${base_image%%/*}"
ecr_domain="${BASH_REMATCH[3]}"
build_args=(
    --build-arg "BASE_ACCOUNT=${BASH_REMATCH[1]}"
    --build-arg "REGION=${BASH_REMATCH[2]}"
    --build-arg "ECR_DOMAIN=$ecr_domain"
    --build-arg "PYTORCH_VERSION=${BASH_REMATCH[4]}"
    --build-arg "PROCESSOR=${BASH_REMATCH[5]}"
    --build-arg "PY_VERSION=${BASH_REMATCH[6]}"
)
registry="$ACCOUNT.dkr.ecr.$REGION.$ecr_domain"
image_uri="$registry/$REPOSITORY:$TAG"

step "ECR repository $REPOSITORY in $ACCOUNT/$REGION"
if ! describe_error="$(aws ecr describe-repositories --registry-id "$ACCOUNT" \
    --repository-names "$REPOSITORY" --region "$REGION" 2>&1 >/dev/null)"; then
    [[ $describe_error == *RepositoryNotFoundException* ]] ||
        die "cannot look up ECR repository $REPOSITORY: $describe_error"
    step "creating it"
    aws ecr create-repository --registry-id "$ACCOUNT" --repository-name "$REPOSITORY" \
        --region "$REGION" --image-scanning-configuration scanOnPush=true >/dev/null
fi

# One token serves every registry of the region: AWS's (to pull the base image) and yours.
step "logging in to $base_registry and $registry"
password="$(aws ecr get-login-password --region "$REGION")"
docker login --username AWS --password-stdin "$base_registry" <<<"$password" >&2
docker login --username AWS --password-stdin "$registry" <<<"$password" >&2

step "building $REPOSITORY:$TAG from $base_image"
# SageMaker training instances are x86_64; the flag keeps builds on ARM laptops usable.
docker build --platform linux/amd64 "${build_args[@]}" --tag "$REPOSITORY:$TAG" \
    --file "$PROJECT_ROOT/docker/Dockerfile" "$PROJECT_ROOT/src" >&2
docker tag "$REPOSITORY:$TAG" "$image_uri"

step "pushing $image_uri"
docker push "$image_uri" >&2
printf '%s\n' "$image_uri"
