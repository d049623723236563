"""The values this project was generated with; every launcher script reads them here.

Each can be overridden on the command line (and some by environment, see --help).
"""

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
