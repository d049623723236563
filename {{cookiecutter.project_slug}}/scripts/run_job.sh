#!/usr/bin/env bash
# Launch the SageMaker job for config/exp<NUMBER>.yaml with this project's account, region,
# instance type and experiment (run_job.py's defaults, from launcher/project.py).
#   bash scripts/run_job.sh 001 [more run_job.py options, e.g. --use-spot or --dry-run]
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: bash scripts/run_job.sh NUMBER [run_job.py options]   (e.g. 001 -> config/exp001.yaml)" >&2
    exit 2
fi
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$project_root/config/exp$1.yaml"
shift
if [[ ! -f "$config" ]]; then
    echo "run_job.sh: no config file $config; available:" >&2
    ls "$project_root"/config/exp*.yaml >&2 2>/dev/null || echo "  (none in config/)" >&2
    exit 2
fi
exec "${PYTHON:-python}" "$project_root/scripts/run_job.py" --config "$config" "$@"
