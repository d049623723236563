"""Validate every cookiecutter input before anything is rendered.

Inputs arrive as JSON data (never pasted into code), so a value that looks like
Python is only ever a string here. On a bad value: one line naming the field,
the value and what is expected, exit 1; cookiecutter then removes the half-made
output directory.
"""

import json
import re
import sys
from pathlib import Path

CONTEXT = json.loads(r"""{{ cookiecutter | tojson }}""")
# cookiecutter.json as cookiecutter read it before prompting (lists for choices);
# absent under cruft, and without lists when replaying.
TEMPLATE_SPEC = json.loads(r"""{{ _cookiecutter | default({}) | tojson }}""")

# Job names are "<experiment>-<config>-<YYYYmmdd-HHMMSS>" and SageMaker allows 63
# characters: 32 leaves room for a 14-character config name such as "exp001".
EXPERIMENT_NAME_MAX = 32

# Free text: one line, and no template syntax left in it (cookiecutter has already rendered the
# value as a template; what remains would run when cruft renders the project again).
TEMPLATE_SYNTAX = r"(?!.*(\{[%#{]|[}%#]\}))"
FREE_TEXT = TEMPLATE_SYNTAX + r"[^\x00-\x1f\x7f]"
NO_TEMPLATE = "no template syntax: brace-brace, brace-percent, brace-hash"

RULES = {
    "project_name": (
        FREE_TEXT + "{1,200}",
        f"non-empty single-line text (at most 200 characters; {NO_TEMPLATE})",
    ),
    "project_slug": (
        r"[a-z][a-z0-9_-]{0,63}",
        "a lowercase folder name: a letter, then letters, digits, - or _ (at most 64 characters)",
    ),
    "author_name": (FREE_TEXT + "*", f"single-line text ({NO_TEMPLATE})"),
    "description": (FREE_TEXT + "*", f"single-line text ({NO_TEMPLATE})"),
    "aws_account_id": (r"\d{12}", "exactly 12 digits, e.g. 123456789012"),
    "aws_region": (
        r"[a-z]{2,4}(-[a-z]+){1,2}-\d{1,2}",
        "an AWS region name such as us-east-1 or ap-northeast-1",
    ),
    "instance_type": (
        r"ml\.[a-z][a-z0-9-]*\.(medium|large|[0-9]*xlarge)",
        "ml.<family>.<size>, e.g. ml.g4dn.xlarge or ml.m5.large",
    ),
    "experiment_name": (
        # (Built by concatenation: this file is a Jinja template, so no double braces.)
        r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0," + str(EXPERIMENT_NAME_MAX - 1) + "}",
        "letters, digits and hyphens, starting and ending with a letter or digit,"
        f" at most {EXPERIMENT_NAME_MAX} characters (job names add"
        " '-<config>-<timestamp>' within SageMaker's 63)",
    ),
    "sagemaker_role": (
        r"[\w+=,.@-]{1,64}|arn:aws[a-z-]*:iam::\d{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}",
        "an IAM role name (e.g. SageMakerExecutionRole) or a role ARN"
        " (arn:aws:iam::<12 digits>:role/<name>)",
    ),
    "use_spot_instances": (r"true|false", "a boolean (true or false)"),
}


def offered_choices():
    """The options each choice variable offers, as cookiecutter.json lists them.

    A replay file may hold anything and carries no lists: then read cookiecutter.json
    from the template folder when cookiecutter says where it is. cruft says neither,
    and its prompts restrict choices themselves.
    """
    choices = {key: value for key, value in TEMPLATE_SPEC.items() if isinstance(value, list)}
    spec_file = Path(CONTEXT.get("_repo_dir", "")) / "cookiecutter.json"
    if not choices and spec_file.is_absolute() and spec_file.is_file():
        spec = json.loads(spec_file.read_text("utf-8"))
        choices = {key: value for key, value in spec.items() if isinstance(value, list)}
    return choices


def problem(key, value, choices):
    """Why value is not acceptable for key, or None when it is."""
    if key in RULES:
        pattern, expected = RULES[key]
        text = json.dumps(value) if isinstance(value, bool) else value
        # ASCII only: \d and \w would also take fullwidth digits or accented letters, which
        # AWS refuses later with a less helpful message.
        if not isinstance(text, str) or not re.fullmatch(pattern, text, re.ASCII):
            return expected
    if key in choices and value not in choices[key]:
        return "one of " + ", ".join(choices[key])
    return None


# Regions of partitions other than the commercial one, by name (others, e.g. the European
# Sovereign Cloud's, are left to AWS to judge).
OWN_PARTITIONS = {"cn-": "aws-cn", "us-gov-": "aws-us-gov"}


def role_partition_problem(context):
    """Why a role ARN cannot serve the region (another partition's ARN), or None."""
    role, region = str(context.get("sagemaker_role", "")), str(context.get("aws_region", ""))
    if not role.startswith("arn:"):
        return None
    has = role.split(":")[1]
    wanted = next((p for prefix, p in OWN_PARTITIONS.items() if region.startswith(prefix)), None)
    if wanted is None and has in OWN_PARTITIONS.values():
        wanted = "aws"
    if wanted and has != wanted:
        return f"a role ARN of the {wanted} partition for {region} (arn:{wanted}:iam::...)"
    return None


def main():
    choices = offered_choices()
    for key, value in CONTEXT.items():
        if key.startswith("_"):
            continue
        expected = problem(key, value, choices)
        if expected:
            shown = json.dumps(value, ensure_ascii=False)
            print(f"ERROR: {key}={shown} is invalid: expected {expected}.")
            return 1
    expected = role_partition_problem(CONTEXT)
    if expected:
        shown = json.dumps(CONTEXT["sagemaker_role"], ensure_ascii=False)
        print(f"ERROR: sagemaker_role={shown} is invalid: expected {expected}.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
