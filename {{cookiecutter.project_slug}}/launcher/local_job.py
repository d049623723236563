"""Run a CreateTrainingJob request on this machine, as the SageMaker container would run it.

No Docker: the request's entry script runs with this Python, under the contract SDK v3's
container drivers (sagemaker/train/container_drivers/) give it inside the image:

- an /opt/ml tree (here in a temp folder): input/config/*.json, input/data/<channel>/,
  model/, output/data/, output/failure, checkpoints/;
- the SM_* variables of scripts/environment.py, TRAINING_JOB_NAME and the request's Environment;
- argv as distributed_drivers/basic_script_driver.py builds it from the hyperparameters, or
  as torchrun_driver.py does for a distributed (Torchrun) job, run in input/data/code/;
- model/ and output/data/ packed as model.tar.gz and output.tar.gz at the end, whatever the outcome;
- src/container_entry.py first, as in the job's request: Ctrl-C stops the run as SageMaker stops a
  job, with SIGTERM to that first process, which passes it on to train.py.

tests/test_local_job.py checks this against the SDK's driver functions.
"""

import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sagemaker.train.container_drivers.common.utils import (
    hyperparameters_to_cli_args,
    safe_deserialize,
    safe_serialize,
)

from launcher import job_request
from launcher.project import SOURCE_DIR

HOST = "algo-1"
MASTER_PORT = 7777
DRIVERS_CHANNEL = "sm_drivers"  # the SDK's own channel: sourcecode.json, distributed.json
CONTAINER_ENTRY = SOURCE_DIR / job_request.CONTAINER_ENTRY  # the project's, whatever the request


@dataclass
class ContainerRun:
    """What a finished container leaves behind."""

    status: str  # Completed, Failed or Stopped (Ctrl-C)
    exit_code: int
    failure_reason: str | None
    start: float  # epoch seconds
    end: float
    log_events: list = field(default_factory=list)  # (epoch milliseconds, line)
    model_tar: Path | None = None
    output_tar: Path | None = None


def resource_config(instance_type):
    """resourceconfig.json as SageMaker writes it for a single host."""
    return {
        "current_host": HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": [HOST],
            }
        ],
        "network_interface_name": "eth0",
    }


def input_data_config(request):
    """inputdataconfig.json: one entry per channel of the request."""
    return {
        channel["ChannelName"]: {
            "TrainingInputMode": channel.get("InputMode", "File"),
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for channel in request["InputDataConfig"]
    }


def read_json(path):
    try:
        return json.loads(Path(path).read_text()) or {}
    except FileNotFoundError:
        return {}


def count_gpus():
    """As the container counts them: lines of `nvidia-smi --list-gpus`."""
    try:
        listing = subprocess.check_output(["nvidia-smi", "--list-gpus"], text=True)
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def container_environment(opt_ml, job_name, resources, channels, hyperparameters):
    """The SM_* variables scripts/environment.py's set_env() exports, rooted at opt_ml."""
    opt_ml = Path(opt_ml)
    data = opt_ml / "input" / "data"
    env = {
        "SM_MODEL_DIR": opt_ml / "model",
        "SM_INPUT_DIR": opt_ml / "input",
        "SM_INPUT_DATA_DIR": data,
        "SM_INPUT_CONFIG_DIR": opt_ml / "input" / "config",
        "SM_OUTPUT_DIR": opt_ml / "output",
        "SM_OUTPUT_FAILURE": opt_ml / "output" / "failure",
        "SM_OUTPUT_DATA_DIR": opt_ml / "output" / "data",
        "SM_LOG_LEVEL": os.environ.get("SM_LOG_LEVEL", 20),
        "SM_MASTER_ADDR": HOST,
        "SM_MASTER_PORT": MASTER_PORT,
    }
    env = {key: str(value) if isinstance(value, Path) else value for key, value in env.items()}
    source_code = read_json(data / DRIVERS_CHANNEL / "sourcecode.json")
    if source_code:
        env["SM_SOURCE_DIR"] = str(data / "code")
        env["SM_ENTRY_SCRIPT"] = source_code.get("entry_script", "")
    distributed = read_json(data / DRIVERS_CHANNEL / "distributed.json")
    if distributed:
        env["SM_DISTRIBUTED_DRIVER_DIR"] = str(data / DRIVERS_CHANNEL / "distributed_drivers")
        env["SM_DISTRIBUTED_CONFIG"] = distributed
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(data / channel)
    env["SM_CHANNELS"] = list(channels)
    hps = {key: safe_deserialize(value) for key, value in hyperparameters.items()}
    for key, value in hps.items():
        env[f"SM_HP_{key.replace('-', '_').upper()}"] = value
    env["SM_HPS"] = hps
    hosts = sorted(resources["hosts"])
    env.update(
        SM_CURRENT_HOST=resources["current_host"],
        SM_CURRENT_INSTANCE_TYPE=resources["current_instance_type"],
        SM_HOSTS=hosts,
        SM_NETWORK_INTERFACE_NAME=resources["network_interface_name"],
        SM_HOST_COUNT=len(hosts),
        SM_CURRENT_HOST_RANK=hosts.index(resources["current_host"]),
        SM_NUM_CPUS=multiprocessing.cpu_count(),
        SM_NUM_GPUS=count_gpus(),
        SM_NUM_NEURONS=0,  # Trainium/Inferentia only
        SM_RESOURCE_CONFIG=resources,
        SM_INPUT_DATA_CONFIG=channels,
    )
    env["SM_TRAINING_ENV"] = {
        "channel_input_dirs": {name: env[f"SM_CHANNEL_{name.upper()}"] for name in channels},
        "current_host": env["SM_CURRENT_HOST"],
        "current_instance_type": env["SM_CURRENT_INSTANCE_TYPE"],
        "hosts": hosts,
        "master_addr": HOST,
        "master_port": MASTER_PORT,
        "hyperparameters": hps,
        "input_data_config": channels,
        "input_config_dir": env["SM_INPUT_CONFIG_DIR"],
        "input_data_dir": env["SM_INPUT_DATA_DIR"],
        "input_dir": env["SM_INPUT_DIR"],
        "job_name": job_name,
        "log_level": env["SM_LOG_LEVEL"],
        "model_dir": env["SM_MODEL_DIR"],
        "network_interface_name": env["SM_NETWORK_INTERFACE_NAME"],
        "num_cpus": env["SM_NUM_CPUS"],
        "num_gpus": env["SM_NUM_GPUS"],
        "num_neurons": env["SM_NUM_NEURONS"],
        "output_data_dir": env["SM_OUTPUT_DATA_DIR"],
        "resource_config": resources,
    }
    return {key: safe_serialize(value) for key, value in env.items()}


def entry_command(environment):
    """The driver's command line, from SM_ENTRY_SCRIPT, SM_HPS and SM_DISTRIBUTED_CONFIG:
    basic_script_driver.py's, or torchrun_driver.py's for one host when the job is distributed.
    """
    entry_script = environment["SM_ENTRY_SCRIPT"]
    if not entry_script.endswith(".py"):
        raise ValueError(f"--local runs Python entry scripts only, not {entry_script}")
    arguments = hyperparameters_to_cli_args(json.loads(environment["SM_HPS"]))
    distributed = json.loads(environment.get("SM_DISTRIBUTED_CONFIG") or "{}")
    if not distributed:
        return [sys.executable, entry_script, *arguments]
    if "process_count_per_node" not in distributed or "mpi_additional_options" in distributed:
        raise ValueError(f"--local runs Torchrun jobs only, not {distributed}")
    # As the driver's get_process_count(): the configured count, else one per GPU, else 1.
    processes = distributed["process_count_per_node"] or int(environment["SM_NUM_GPUS"]) or 1
    # `torchrun` itself, from this Python (a venv's torchrun need not be on PATH).
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    return [*torchrun, "--nnodes=1", f"--nproc_per_node={processes}", entry_script, *arguments]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_tree(opt_ml, request, channel_dirs):
    """The /opt/ml layout: config files, a copy of every channel, empty output folders."""
    config_dir = opt_ml / "input" / "config"
    config_dir.mkdir(parents=True)
    resources = resource_config(request["ResourceConfig"]["InstanceType"])
    channels = input_data_config(request)
    hyperparameters = request.get("HyperParameters", {})
    for name, content in [
        ("resourceconfig.json", resources),
        ("inputdataconfig.json", channels),
        ("hyperparameters.json", hyperparameters),
    ]:
        (config_dir / name).write_text(json.dumps(content))
    for name in channels:
        shutil.copytree(channel_dirs[name], opt_ml / "input" / "data" / name)
    for folder in ["model", "output/data", "checkpoints"]:
        (opt_ml / folder).mkdir(parents=True, exist_ok=True)
    return resources, channels, hyperparameters


def pack(folder, archive):
    """Tar the folder's content (not the folder itself), as SageMaker does for model.tar.gz."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def run_container(request, channel_dirs, workdir, echo=print, checkpoints=None, stop=None):
    """Run the request's entry script in a fresh /opt/ml tree under workdir.

    channel_dirs maps each channel of the request to a local folder holding its content.
    checkpoints: a folder that /opt/ml/checkpoints starts from and is copied back to at the end,
    as SageMaker syncs it with the CheckpointConfig prefix. stop: a threading.Event; once set,
    the job is stopped as StopTrainingJob stops it (SIGTERM to the first process).
    """
    workdir = Path(workdir)
    opt_ml = workdir / "opt" / "ml"
    job_name = request["TrainingJobName"]
    resources, channels, hyperparameters = prepare_tree(opt_ml, request, channel_dirs)
    if checkpoints is not None:
        shutil.copytree(checkpoints, opt_ml / "checkpoints", dirs_exist_ok=True)
    sm_environment = container_environment(opt_ml, job_name, resources, channels, hyperparameters)
    command = entry_command(sm_environment)
    environment = {
        **os.environ,
        **request.get("Environment", {}),
        "TRAINING_JOB_NAME": job_name,
        **sm_environment,
    }
    if "torch.distributed.run" in command:
        # torchrun's own variable for --master-port: two local jobs at once do not collide on
        # its default port, and the command stays the driver's.
        environment["PET_MASTER_PORT"] = str(free_port())
    log_events = []

    def log(line):
        # The temporary tree is gone once the run ends: say /opt/ml, as a job's log would.
        line = line.replace(str(opt_ml), "/opt/ml")
        log_events.append((int(time.time() * 1000), line))
        echo(line)

    start = time.time()
    log(f"Executing command: {' '.join(command)}")
    # Under src/container_entry.py, the job's PID 1, in a session of its own: Ctrl-C reaches this
    # process only, which stops the job as SageMaker does, with SIGTERM to that first process.
    entry_script = Path(sm_environment["SM_ENTRY_SCRIPT"]).name
    process = subprocess.Popen(
        [sys.executable, CONTAINER_ENTRY, "--entry-script", entry_script, "--", *command],
        cwd=opt_ml / "input" / "data" / "code",
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    status = "Completed"
    stopped = []

    def stop_when_asked():
        while not stop.wait(0.2):
            if process.poll() is not None:
                return
        if process.poll() is None:
            stopped.append(True)
            process.send_signal(signal.SIGTERM)

    if stop is not None:
        threading.Thread(target=stop_when_asked, daemon=True).start()
    try:
        for line in process.stdout:
            log(line.rstrip("\n"))
    except KeyboardInterrupt:
        status = "Stopped"
        process.send_signal(signal.SIGTERM)
        try:  # train.py saves a checkpoint and says so: keep its last lines
            for line in process.stdout:
                log(line.rstrip("\n"))
        except KeyboardInterrupt:  # a second Ctrl-C: no waiting
            os.killpg(process.pid, signal.SIGKILL)
    exit_code = process.wait()
    if stopped:
        status = "Stopped"
    if checkpoints is not None:  # as SageMaker's sync: what the job deleted is gone there too
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.copytree(opt_ml / "checkpoints", checkpoints)
    failure_reason = None
    if exit_code != 0 and status == "Completed":
        status = "Failed"
        last_lines = [text for _, text in log_events[-3:] if text.strip()]
        failure_reason = (
            f"AlgorithmError: {sm_environment['SM_ENTRY_SCRIPT']} exited with code {exit_code}: "
            + " | ".join(last_lines)
        )[:1024]
        (opt_ml / "output" / "failure").write_text(failure_reason)
    artifacts = workdir / "artifacts"
    artifacts.mkdir()
    return ContainerRun(
        status=status,
        exit_code=exit_code,
        failure_reason=failure_reason,
        start=start,
        end=time.time(),
        log_events=log_events,
        model_tar=pack(opt_ml / "model", artifacts / "model.tar.gz"),
        output_tar=pack(opt_ml / "output" / "data", artifacts / "output.tar.gz"),
    )


def description(request, run):
    """What DescribeTrainingJob would say about this run; the final metrics are the last values
    the request's metric definitions find in the log, as SageMaker reports them."""
    values = {}
    for _, line in run.log_events:
        for metric in request["AlgorithmSpecification"].get("MetricDefinitions", []):
            match = re.search(metric["Regex"], line)
            if match:
                values[metric["Name"]] = float(match.group(1))
    started = datetime.fromtimestamp(run.start, timezone.utc)
    return {
        **request,
        "TrainingJobStatus": run.status,
        "SecondaryStatus": run.status,
        "FailureReason": run.failure_reason,
        "CreationTime": started,
        "TrainingStartTime": started,
        "TrainingEndTime": datetime.fromtimestamp(run.end, timezone.utc),
        "TrainingTimeInSeconds": round(run.end - run.start),
        "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in values.items()],
    }
