"""Hostile configs for run_job.py and tune.py: each is refused with one line and exit code 2,
before any AWS call, leaving the config as it was and no result folder.

The scripts run in this process (their main(argv)), so the many cases cost no interpreter start.
"""

import pytest
import run_job
import tune
from test_tune import TUNING  # the valid tuning config the cases below break

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
CONFIG_CASES = {
    "alias-bomb": (ALIAS_BOMB, "anchors and aliases (& and *) are not allowed"),
    "one-alias": ("epochs: &n 2\nwidth: *n\n", "anchors and aliases (& and *) are not allowed"),
    "duplicate-key": ("lr: 0.1\nepochs: 1\nlr: 0.2\n", "key 'lr' is given twice"),
    "lr-inf": ("lr: .inf\n", "lr: inf is not a finite number"),
    "lr-minus-inf": ("lr: -.inf\n", "lr: -inf is not a finite number"),
    "lr-nan": ("lr: .nan\n", "lr: nan is not a finite number"),
    "lr-zero": ("lr: 0\n", "argument --lr: must be a finite number above 0, got 0"),
    "weight-decay-negative": ("weight-decay: -1\n", "--weight-decay: must be a finite number 0"),
    "weight-decay-nan": ("weight-decay: .nan\n", "weight-decay: nan is not a finite"),
    "width-huge": ("width: 100000\n", "argument --width: must be from 1 to 1024"),
    "width-zero": ("width: 0\n", "argument --width: must be from 1 to 1024"),
    "log-interval-negative": ("log-interval: -1\n", "--log-interval: must be a finite number 0"),
    "log-interval-inf": ("log-interval: .inf\n", "log-interval: inf is not a finite"),
    "seed-negative": ("seed: -1\n", "argument --seed: must be from 0 to 4294967295"),
    "seed-huge": ("seed: 99999999999999999999\n", "argument --seed: must be from 0"),
    "epochs-fraction": ("epochs: 1.5\n", "argument --epochs: invalid whole number value"),
    "epochs-boolean": ("epochs: true\n", "argument --epochs: invalid whole number value"),
    "batch-size-list": ("batch-size: [1, 2]\n", "argument --batch-size: invalid"),
    "amp-number": ("amp: 2\n", "argument --amp: expected true/false/1/0"),
    "tab-indent": ("epochs: 1\n\tlr: 0.1\n", "not valid YAML"),
    "mapping-value": ("lr: {a: 1}\n", "argument --lr: invalid"),
    "top-level-list": ("- epochs: 1\n", "expected `key: value` lines, got list"),
    "top-level-text": ("just words\n", "expected `key: value` lines, got str"),
    "checkpoint-path": ("checkpoint-dir: /tmp\n", "is a path SageMaker sets"),
    "null-key": ("~: 1\n", "unknown key None"),
}


def call(script, argv, capsys):
    code = script.main([str(word) for word in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def assert_refused(code, lines, message, config, content, tmp_path):
    assert code == 2, lines
    assert len(lines) == 1 and message in lines[0], lines
    assert config.read_bytes() == content  # nothing lost
    assert sorted(path.name for path in tmp_path.iterdir()) == [config.name]  # nothing made


@pytest.mark.parametrize(("text", "message"), CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_hostile_run_job_config_is_refused_in_one_line_before_any_aws_call(
    aws_call_recorder, tmp_path, capsys, text, message
):
    config, content = tmp_path / "exp.yaml", text.encode()
    config.write_bytes(content)

    code, lines = call(run_job, ["--config", config, "--out-dir", tmp_path / "out"], capsys)

    assert_refused(code, lines, f"{config}: ", config, content, tmp_path)
    assert message in lines[0]
    assert aws_call_recorder == []


FILE_CASES = {
    "binary": (bytes(range(256)) * 4, "not a text file (expected UTF-8 YAML)"),
    "nul-bytes": (b"epochs: 1\n\0\0\0", "not a text file (expected UTF-8 YAML)"),
    "utf-16": ("epochs: 1\n".encode("utf-16"), "not a text file (expected UTF-8 YAML)"),
    "oversized": (b"# padding\n" * 7000, "a config is a few `key: value` lines (at most 65,536"),
}


@pytest.mark.parametrize("script", [run_job, tune], ids=["run_job", "tune"])
@pytest.mark.parametrize(("content", "message"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_a_file_that_is_no_small_yaml_text_is_refused_in_one_line(
    aws_call_recorder, tmp_path, capsys, script, content, message
):
    config = tmp_path / "exp.yaml"
    config.write_bytes(content)

    code, lines = call(script, ["--config", config, "--out-dir", tmp_path / "out"], capsys)

    assert_refused(code, lines, message, config, content, tmp_path)
    assert aws_call_recorder == []


def test_a_config_too_big_to_read_is_refused_without_reading_it(
    aws_call_recorder, tmp_path, capsys
):
    config = tmp_path / "exp.yaml"
    with open(config, "wb") as file:  # 50 MB, sparse: its size alone refuses it
        file.truncate(50 * 1024 * 1024)

    code, lines = call(run_job, ["--config", config], capsys)

    assert code == 2 and len(lines) == 1 and "52,428,800 bytes" in lines[0], lines
    assert config.stat().st_size == 50 * 1024 * 1024 and aws_call_recorder == []


TUNING_CASES = {
    "max-jobs-boolean": (("max-jobs: 3", "max-jobs: true"), "max-jobs must be a whole number"),
    "max-parallel-boolean": (
        ("max-parallel-jobs: 2", "max-parallel-jobs: true"),
        "max-parallel-jobs must be from 1 to max-jobs",
    ),
    "max-jobs-fraction": (("max-jobs: 3", "max-jobs: 2.5"), "max-jobs must be a whole number"),
    "range-to-infinity": (("max: 0.1", "max: .inf"), "lr: inf is not a finite number"),
    "range-of-nan": (("min: 0.001", "min: .nan"), "must be below max"),
    "fixed-nan": (("  epochs: 1", "  weight-decay: .nan"), "weight-decay: nan is not a finite"),
    "fixed-log-interval": (("  epochs: 1", "  log-interval: -5"), "--log-interval: must be"),
    "duplicate-range": (
        ("  lr: {", "  lr: {type: categorical, values: [0.1]}\n  lr: {"),
        "key 'lr' is given twice",
    ),
    "alias": (
        ("max-jobs: 3\nmax-parallel-jobs: 2", "max-jobs: &n 3\nmax-parallel-jobs: *n"),
        "anchors and aliases (& and *) are not allowed",
    ),
}


@pytest.mark.parametrize(("change", "message"), TUNING_CASES.values(), ids=TUNING_CASES.keys())
def test_hostile_tuning_config_is_refused_in_one_line_before_any_aws_call(
    aws_call_recorder, tmp_path, capsys, change, message
):
    config = tmp_path / "tune.yaml"
    content = TUNING.replace(*change, 1).encode()
    config.write_bytes(content)

    code, lines = call(tune, ["--config", config, "--out-dir", tmp_path / "out"], capsys)

    assert_refused(code, lines, message, config, content, tmp_path)
    assert aws_call_recorder == []
