"""Bad input at generation: a clear message naming the field, and nothing left behind."""

import pytest
from conftest import TEMPLATE_DIR, cookiecutter_cli, leftovers, render_from_replay, render_no_input
from cookiecutter.exceptions import FailedHookException

INVALID_INPUTS = [
    ("project_name", ""),
    ("project_name", "two\nlines"),
    ("project_name", "x" * 201),
    ("project_slug", "My Project"),
    ("project_slug", "1project"),
    ("project_slug", "-project"),
    ("project_slug", "project!"),
    ("project_slug", "ünïcode"),
    ("author_name", "tab\there"),
    ("description", "line\nbreak"),
    ("aws_account_id", "12345678901"),
    ("aws_account_id", "1234567890123"),
    ("aws_account_id", "12345678901a"),
    ("aws_account_id", ""),
    ("aws_account_id", " 123456789012"),
    ("aws_region", "us_east_1"),
    ("aws_region", "US-EAST-1"),
    ("aws_region", "useast1"),
    ("aws_region", "us-east"),
    ("aws_region", "tokyo"),
    ("instance_type", "g4dn.xlarge"),
    ("instance_type", "ml.g4dn"),
    ("instance_type", "ml.g4dn.huge"),
    ("instance_type", "ML.G4DN.XLARGE"),
    ("instance_type", "ml..xlarge"),
    ("experiment_name", "-mnist"),
    ("experiment_name", "mnist-"),
    ("experiment_name", "mnist_v1"),
    ("experiment_name", "mnist.v1"),
    ("experiment_name", "a" * 33),
    ("experiment_name", ""),
    ("sagemaker_role", "role with spaces"),
    ("sagemaker_role", "r" * 65),
    ("sagemaker_role", "arn:aws:iam::123:role/SageMaker"),
    ("sagemaker_role", "arn:aws:iam::123456789012:user/someone"),
    ("sagemaker_role", "arn:aws:s3:::bucket"),
    # Non-ASCII digits and letters that \d and \w would take
    ("aws_account_id", "１２３４５６７８９０１２"),
    ("aws_account_id", "١٢٣٤٥٦٧٨٩٠١٢"),
    ("aws_region", "us-east-١"),
    ("aws_region", "ap-northeast-１"),
    ("instance_type", "ml.g4dn.２xlarge"),
    ("sagemaker_role", "Rolé"),
    ("sagemaker_role", "ロール"),
    ("sagemaker_role", "arn:aws:iam::１２３４５６７８９０１２:role/SageMaker"),
    ("sagemaker_role", "arn:aws:iam::123456789012:role/Rolé"),
    ("experiment_name", "mnïst"),
    ("project_slug", "ｐroject"),
    # Template syntax left in free text after cookiecutter rendered it (escaped by the user)
    ("project_name", '{{ "{{" }} cookiecutter.x }}'),
    ("author_name", "{% raw %}{% if x %}{% endraw %}"),
    ("description", "{% raw %}{# note #}{% endraw %}"),
]


@pytest.mark.parametrize(("field", "value"), INVALID_INPUTS)
def test_invalid_input_fails_names_the_field_and_leaves_no_directory(field, value, tmp_path, capfd):
    output_dir = tmp_path / "out"
    with pytest.raises(FailedHookException):
        render_no_input(output_dir, **{field: value})
    message = capfd.readouterr().out.strip().splitlines()
    assert len(message) == 1, message
    assert message[0].startswith(f"ERROR: {field}="), message
    assert "expected" in message[0]
    assert leftovers(output_dir) == []


UNOFFERED_CHOICES = [
    ("pytorch_version", "1.0.0"),
    ("experiment_tracking", "wandb"),
    ("container", "podman"),
]


@pytest.mark.parametrize(
    ("field", "value"), [*UNOFFERED_CHOICES, ("use_spot_instances", "sometimes")]
)
def test_invalid_choice_on_the_command_line_is_refused_before_rendering(field, value, tmp_path):
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=field if field != "use_spot_instances" else "sometimes"):
        render_no_input(output_dir, **{field: value})
    assert leftovers(output_dir) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *UNOFFERED_CHOICES,
        ("use_spot_instances", "yes"),
        ("use_spot_instances", "maybe"),
        ("aws_account_id", 123456789012),
        ("aws_account_id", "１２３４５６７８９０１２"),
        ("project_name", "{{ cookiecutter.aws_account_id }}"),  # replays are not rendered first
        ("description", "{% if true %}x{% endif %}"),
    ],
)
def test_hand_edited_replay_file_is_validated_too(field, value, tmp_path, capfd):
    with pytest.raises(FailedHookException):
        render_from_replay(tmp_path, **{field: value})
    assert capfd.readouterr().out.startswith(f"ERROR: {field}=")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aws_account_id", "000000000000"),
        ("aws_region", "ap-northeast-1"),
        ("aws_region", "us-gov-west-1"),
        ("aws_region", "eusc-de-east-1"),
        ("instance_type", "ml.p4d.24xlarge"),
        ("instance_type", "ml.m5.large"),
        ("instance_type", "ml.trn1.32xlarge"),
        ("experiment_name", "a" * 32),
        ("experiment_name", "My-Exp--2"),
        ("sagemaker_role", "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-Exec"),
        ("project_slug", "my_project-2"),
    ],
)
def test_valid_edge_values_render(field, value, bake):
    project = bake(**{field: value})
    assert project.is_dir()


@pytest.mark.parametrize(
    ("region", "role", "valid"),
    [
        ("cn-north-1", "arn:aws-cn:iam::123456789012:role/SageMaker", True),
        ("us-gov-west-1", "arn:aws-us-gov:iam::123456789012:role/SageMaker", True),
        ("cn-north-1", "SageMaker", True),  # a name: the launcher makes the region's ARN
        ("cn-north-1", "arn:aws:iam::123456789012:role/SageMaker", False),
        ("us-east-1", "arn:aws-cn:iam::123456789012:role/SageMaker", False),
    ],
)
def test_a_role_arn_must_be_of_the_regions_partition(region, role, valid, tmp_path, capfd):
    output_dir = tmp_path / "out"
    if valid:
        render_no_input(output_dir, aws_region=region, sagemaker_role=role)
        assert leftovers(output_dir) != []
        return
    with pytest.raises(FailedHookException):
        render_no_input(output_dir, aws_region=region, sagemaker_role=role)
    (message,) = capfd.readouterr().out.strip().splitlines()
    assert message.startswith("ERROR: sagemaker_role=") and "partition" in message
    assert leftovers(output_dir) == []


def test_command_line_bad_value_exits_1_with_the_message_first(tmp_path):
    result = cookiecutter_cli(
        "--no-input", TEMPLATE_DIR, "-o", tmp_path / "out", "aws_account_id=12345"
    )
    assert result.returncode == 1
    first_line = (result.stdout + result.stderr).strip().splitlines()[0]
    assert first_line == (
        'ERROR: aws_account_id="12345" is invalid: expected exactly 12 digits, e.g. 123456789012.'
    )
    assert leftovers(tmp_path / "out") == []


README = (TEMPLATE_DIR / "README.md").read_text("utf-8")
TROUBLESHOOTING = README[README.index("## Troubleshooting") :]


@pytest.mark.parametrize(
    ("override", "explained_by"),
    [
        ("pytorch_version=1.0.0", "provided for choice variable"),
        ("experiment_tracking=wandb", "provided for choice variable"),
        ("use_spot_instances=sometimes", "could not be converted to a boolean"),
        ("author_name={{ cookiecutter.nothing }}", "Unable to render variable"),
    ],
)
def test_errors_cookiecutter_raises_before_the_hook_are_explained_in_the_troubleshooting(
    override, explained_by, tmp_path
):
    result = cookiecutter_cli("--no-input", TEMPLATE_DIR, "-o", tmp_path / "out", override)

    assert result.returncode != 0
    assert explained_by in result.stdout + result.stderr  # what the user sees ...
    assert explained_by in TROUBLESHOOTING  # ... is what the README explains
    assert leftovers(tmp_path / "out") == []


def test_rendered_readmes_show_booleans_as_the_user_typed_them(bake):
    for typed in ("true", "false"):
        project = bake(use_spot_instances=typed)
        for readme in ("README.md", "README.ja.md"):
            text = (project / readme).read_text("utf-8")
            assert f"| `{typed}` |" in text and "`True`" not in text and "`False`" not in text
