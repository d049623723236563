"""--local runs the entry script under the contract of SDK v3's container drivers.

A probe entry script records its argv, working folder and environment; they must equal what the
SDK's own driver code (sagemaker/train/container_drivers/) computes for the same request.
"""

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from aws_fakes import REGION

from launcher import job_config, job_request, local_job, project

PROBE = """
import json, os, sys
record = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}
name = f"probe-{os.environ['RANK']}.json" if "RANK" in os.environ else "probe.json"
with open(os.path.join(os.environ["SM_MODEL_DIR"], name), "w") as f:
    json.dump(record, f)
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "metrics.csv"), "w") as f:
    f.write("epoch,train_loss,val_loss,val_accuracy\\n")
print("epoch=1 train_loss=0.5 val_loss=0.4 val_accuracy=0.9")
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""

# Values of every type a YAML config can hold, as the container would receive them.
HYPERPARAMETERS = {"epochs": 3, "lr": 0.001, "flag": True, "name": "a b", "sizes": [1, 2]}


def sdk_driver_module(relative_path):
    """Load one of the SDK's container driver scripts the way the container runs it."""
    import sagemaker.train

    drivers = Path(sagemaker.train.__file__).parent / "container_drivers"
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location(
        f"sdk_{Path(relative_path).stem}", drivers / relative_path
    )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # it puts container_drivers/ on sys.path for `common`
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if name == "common" or name.startswith("common."):
                del sys.modules[name]
    return module


@pytest.fixture
def probe_run(tmp_path, monkeypatch, aws_credentials):
    """The request run_job.py builds for a probe entry script, run through local_job."""
    source = tmp_path / "src"
    source.mkdir()
    (source / project.ENTRY_SCRIPT).write_text(PROBE)
    (source / "requirements.txt").write_text("")
    training = tmp_path / "dataset"
    (training / "part").mkdir(parents=True)
    (training / "part" / "examples.bin").write_bytes(b"data")
    monkeypatch.setattr(job_request, "SOURCE_DIR", source)
    spec = job_request.JobSpec(
        region=REGION,
        role_arn=job_request.role_arn("Role", REGION),
        image_uri="image",
        instance_type="ml.m5.xlarge",
        instance_count=1,
        dataset_uri=str(training),
        experiment="probe",
        input_mode="FastFile",
        environment={"FROM_REQUEST": "yes"},
    )
    config = job_config.JobConfig(
        path=Path("probe.yaml"), name="probe", hyperparameters=HYPERPARAMETERS
    )

    def run(exit_code=0, processes_per_host=None):
        monkeypatch.setenv("PROBE_EXIT", str(exit_code))
        job = spec
        if processes_per_host:
            job = dataclasses.replace(spec, distributed=True, processes_per_host=processes_per_host)
        with job_request.offline_session(REGION, "bucket") as session:
            request = job_request.build_request(job, config, "probe-probe", session)
            channels = {"training": training}
            for channel in request["InputDataConfig"][1:]:
                channels[channel["ChannelName"]] = session.staged[
                    channel["DataSource"]["S3DataSource"]["S3Uri"]
                ]
            workdir = tmp_path / f"work{exit_code}"
            return (
                request,
                workdir,
                local_job.run_container(request, channels, workdir, echo=lambda _: None),
            )

    return run


def test_argv_matches_the_sdk_basic_script_driver(probe_run, monkeypatch):
    request, workdir, run = probe_run()
    probe = json.loads((workdir / "opt/ml/model/probe.json").read_text())
    driver = sdk_driver_module("distributed_drivers/basic_script_driver.py")
    monkeypatch.setenv("SM_ENTRY_SCRIPT", probe["env"]["SM_ENTRY_SCRIPT"])
    monkeypatch.setenv("SM_HPS", probe["env"]["SM_HPS"])

    python, *argv = driver.create_commands()

    assert run.status == "Completed"
    assert probe["argv"] == argv
    assert argv[:3] == ["train.py", "--epochs", "3"]
    assert ["--flag", "true", "--name", "a b", "--sizes", "[1, 2]"] == argv[-6:]
    assert probe["cwd"] == str(workdir / "opt/ml/input/data/code")
    assert run.log_events[0][1] == f"Executing command: {python} {' '.join(argv)}"


def test_distributed_local_run_matches_the_sdk_torchrun_driver(probe_run, monkeypatch):
    request, workdir, run = probe_run(processes_per_host=2)
    probes = [
        json.loads((workdir / f"opt/ml/model/probe-{rank}.json").read_text()) for rank in (0, 1)
    ]
    driver = sdk_driver_module("distributed_drivers/torchrun_driver.py")
    for name in ["SM_ENTRY_SCRIPT", "SM_HPS", "SM_DISTRIBUTED_CONFIG", "SM_HOST_COUNT"]:
        monkeypatch.setenv(name, probes[0]["env"][name])
    monkeypatch.setenv("SM_NUM_GPUS", "0")

    launcher, *arguments = driver.create_commands()

    assert run.status == "Completed", run.log_events
    assert launcher == "torchrun"  # --local runs the same module from this Python
    torchrun = f"{sys.executable} -m torch.distributed.run"
    assert run.log_events[0][1] == f"Executing command: {torchrun} {' '.join(arguments)}"
    assert arguments[:3] == ["--nnodes=1", "--nproc_per_node=2", "train.py"]
    for rank, probe in enumerate(probes):
        assert probe["argv"] == arguments[2:]
        assert (probe["env"]["RANK"], probe["env"]["LOCAL_RANK"]) == (str(rank), str(rank))
        assert probe["env"]["WORLD_SIZE"] == "2"
        assert probe["cwd"] == str(workdir / "opt/ml/input/data/code")
        assert json.loads(probe["env"]["SM_DISTRIBUTED_CONFIG"])["process_count_per_node"] == 2


def test_environment_matches_the_sdk_environment_script(probe_run, monkeypatch, tmp_path):
    request, workdir, run = probe_run()
    probe = json.loads((workdir / "opt/ml/model/probe.json").read_text())
    opt_ml = workdir / "opt" / "ml"
    environment_script = sdk_driver_module("scripts/environment.py")
    drivers = opt_ml / "input/data/sm_drivers"
    monkeypatch.setattr(
        environment_script,
        "read_source_code_json",
        lambda: json.loads((drivers / "sourcecode.json").read_text()),
    )
    monkeypatch.setattr(
        environment_script,
        "read_distributed_json",
        lambda: json.loads((drivers / "distributed.json").read_text()),
    )
    monkeypatch.setenv("TRAINING_JOB_NAME", request["TrainingJobName"])
    exported = tmp_path / "sm_training.env"

    environment_script.set_env(
        *(
            json.loads((opt_ml / "input/config" / name).read_text())
            for name in ["resourceconfig.json", "inputdataconfig.json", "hyperparameters.json"]
        ),
        output_file=str(exported),
    )

    sdk = dict(
        line.removeprefix("export ").split("=", 1) for line in exported.read_text().splitlines()
    )
    sdk = {key: value.removeprefix("'").removesuffix("'") for key, value in sdk.items()}
    local = {
        key: value.replace(str(opt_ml), "/opt/ml")
        for key, value in probe["env"].items()
        if key.startswith("SM_")
    }
    assert local == sdk
    assert json.loads(sdk["SM_CHANNELS"]) == ["training", "code", "sm_drivers"]
    assert probe["env"]["TRAINING_JOB_NAME"] == request["TrainingJobName"]
    assert probe["env"]["FROM_REQUEST"] == "yes"
    assert (opt_ml / "input/data/training/part/examples.bin").read_bytes() == b"data"


def test_model_and_output_archives_hold_the_folders_content(probe_run):
    _, _, run = probe_run()

    with tarfile.open(run.model_tar) as model, tarfile.open(run.output_tar) as output:
        assert model.getnames() == ["probe.json"]
        assert output.getnames() == ["metrics.csv"]


def test_failing_entry_script_fails_the_job_with_its_last_words_and_keeps_outputs(probe_run):
    _, workdir, run = probe_run(exit_code=3)

    assert (run.status, run.exit_code) == ("Failed", 3)
    assert "exited with code 3" in run.failure_reason
    assert "val_accuracy=0.9" in run.failure_reason
    assert (workdir / "opt/ml/output/failure").read_text() == run.failure_reason
    with tarfile.open(run.output_tar) as output:
        assert output.getnames() == ["metrics.csv"]


@pytest.mark.parametrize(
    ("argv", "is_training"),
    [
        (["/opt/conda/bin/python3", "train.py", "--epochs", "3"], True),  # basic driver
        (["/usr/bin/python3", "-u", "train.py", "--epochs", "3"], True),  # a torchrun worker
        (["/opt/conda/bin/python3.13", "/opt/ml/input/data/code/train.py"], True),
        (["/usr/bin/python3", "/usr/local/bin/torchrun", "--nnodes=1", "train.py"], False),
        (["/bin/bash", "-c", "python train.py"], False),  # the shell that starts it
        (["/usr/bin/python3", "tracking.py"], False),  # train.py's own helper process
        (["/usr/bin/python3", "basic_script_driver.py"], False),  # the driver relays the logs
        ([], False),  # a process gone meanwhile
    ],
)
def test_container_entry_passes_stops_to_the_entry_script_processes_only(argv, is_training):
    import container_entry

    assert container_entry.runs_script(argv, "train.py") == is_training


FORKING_SCRIPT = """
import os, time
for _ in range(2):  # each child sleeps with its parent's command line, as a DataLoader worker
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print("forked", flush=True)
time.sleep(60)
"""


def test_a_stop_reaches_train_py_but_never_the_children_it_forks(tmp_path):
    """DataLoader workers are forks of train.py with its command line: a signal to them kills
    train.py's data pipeline in the middle of its checkpoint."""
    import container_entry

    script = tmp_path / "train.py"
    script.write_text(FORKING_SCRIPT)
    # A shell above train.py, as the SDK's driver: the tree's root runs no training itself.
    shell = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" {script}; true'], stdout=subprocess.PIPE, text=True
    )
    try:
        assert shell.stdout.readline() == "forked\n"
        parents = container_entry.process_parents()
        tree = container_entry.descendants(shell.pid, parents)
        (trainer,) = [pid for pid in tree if parents[pid] == shell.pid]
        forks = {pid for pid in tree if parents[pid] == trainer}
        assert len(forks) == 2

        assert container_entry.training_processes(shell.pid, "train.py") == [trainer]
    finally:
        for pid in container_entry.descendants(shell.pid, container_entry.process_parents()):
            container_entry.send(pid, signal.SIGKILL)
        shell.kill()
        shell.wait()


def test_a_process_that_ends_before_its_stop_arrives_is_skipped(monkeypatch):
    """Between listing the training processes and signalling them, one may end: PID 1 must
    neither crash (that would end the container) nor stop the whole command for it."""
    import container_entry

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # reaped: its pid names no process now
    monkeypatch.setattr(container_entry, "training_processes", lambda root, script: [ended.pid])
    group_signals = []
    monkeypatch.setattr(os, "killpg", lambda *args: group_signals.append(args))

    assert container_entry.pass_stop(os.getpid(), "train.py", signal.SIGTERM) == []
    assert group_signals == []
