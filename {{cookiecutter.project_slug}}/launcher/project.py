"""The project's paths, and the values it was generated with; the launcher reads them here.

Each value can be overridden on the command line (and some by environment, see --help).
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = PROJECT_ROOT / "src"
ENTRY_SCRIPT = "train.py"  # in SOURCE_DIR, which a job receives as its code
CONFIG_DIR = PROJECT_ROOT / "config"
DATASET_DIR = PROJECT_ROOT / "dataset"
RAWDATA_DIR = PROJECT_ROOT / "rawdata"
RESULT_DIR = PROJECT_ROOT / "result"
JOB_RESULTS_DIR = RESULT_DIR / "jobs"
TUNING_RESULTS_DIR = RESULT_DIR / "tune"

# Rendered as JSON strings, which are valid Python: kept as written (however long) so
# any text is safe.
# ruff: noqa: E501
# fmt: off
PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
PROJECT_SLUG = {{ cookiecutter.project_slug | tojson }}
AWS_ACCOUNT_ID = {{ cookiecutter.aws_account_id | tojson }}
AWS_REGION = {{ cookiecutter.aws_region | tojson }}
INSTANCE_TYPE = {{ cookiecutter.instance_type | tojson }}
EXPERIMENT_NAME = {{ cookiecutter.experiment_name | tojson }}
SAGEMAKER_ROLE = {{ cookiecutter.sagemaker_role | tojson }}
PYTORCH_VERSION = {{ cookiecutter.pytorch_version | tojson }}
USE_SPOT_INSTANCES = {{ (cookiecutter.use_spot_instances | string | lower == 'true') }}
CONTAINER = {{ cookiecutter.container | tojson }}
# fmt: on
