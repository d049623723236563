#!/usr/bin/env bash
# Run train.py on this machine the way a SageMaker job runs it: the SM_* variables point at
# this project's folders (set them yourself to use others), options pass through.
#
#   bash src/train.sh --epochs 1
#
# Same results as `python src/train.py`, through the job's code path: paths from SM_*
# variables, and the checkpoint folder beside the model folder.
set -euo pipefail

project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SM_CHANNEL_TRAINING="${SM_CHANNEL_TRAINING:-$project/dataset}"
export SM_MODEL_DIR="${SM_MODEL_DIR:-$project/result/model}"
export SM_OUTPUT_DATA_DIR="${SM_OUTPUT_DATA_DIR:-$project/result/output}"
exec "${PYTHON:-python}" "$project/src/train.py" "$@"
