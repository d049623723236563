"""The container contract: a launch's request, run the way SageMaker runs it.

The request's ContainerEntrypoint + ContainerArguments run as PID 1 of a private PID and mount
namespace (`unshare`), with a clean environment (the request's Environment, TRAINING_JOB_NAME),
/opt/ml laid out as SageMaker lays it out (config JSONs, channels including the SDK's own
unmodified sm_drivers, checkpoints) and this Python as the image's python3. A stop is what
SageMaker sends: SIGTERM to PID 1. This is the reference --local imitates.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch
from aws_fakes import PROJECT_ROOT, REGION

import container_entry
import options
from launcher import job_config, job_request, local_job, project

# Mount the job's /opt/ml (SageMaker's fixed path) in the namespace only: a tmpfs on /opt with
# /opt's own entries bound back into it, then the job's tree on /opt/ml. Then become PID 1.
ENTER_CONTAINER = r"""
set -e
opt_ml="$1"; keep="$2"; shift 2
mount --bind /opt "$keep"
mount -t tmpfs tmpfs /opt
for entry in $(ls -A "$keep"); do
    if [ -d "$keep/$entry" ]; then mkdir "/opt/$entry"; else touch "/opt/$entry"; fi
    mount --bind "$keep/$entry" "/opt/$entry"
done
mkdir -p /opt/ml  # bound back from this machine if it has one: the job tree covers it
mount --bind "$opt_ml" /opt/ml
cd /
exec "$@"
"""
JOB_NAME = "contract-test-20260101000000"
GRACE_SECONDS = 120  # StopTrainingJob: SIGTERM, then SIGKILL this much later


def namespaces_work():
    if not shutil.which("unshare") or not Path("/opt").is_dir():
        return False
    probe = ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not namespaces_work(),
        reason="needs unshare with PID and mount namespaces (root, or user namespaces) and /opt",
    ),
]


def build_request(hyperparameters, staging, **spec_changes):
    """(request, channel name -> local folder), as a launch builds them (no AWS call)."""
    parser = options.build_parser()
    config = tmp_config(staging, hyperparameters, parser)
    spec = job_request.JobSpec(
        region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/image:latest",
        instance_type="ml.m5.xlarge",
        instance_count=1,
        dataset_uri="s3://bucket/dataset",
        experiment="contract",
        **spec_changes,
    )
    session_context = job_request.offline_session("us-east-1", "bucket")
    session = session_context.__enter__()
    request = job_request.build_request(spec, config, "contract-test", session)
    request["TrainingJobName"] = JOB_NAME
    channels = {
        channel["ChannelName"]: session.staged.get(channel["DataSource"]["S3DataSource"]["S3Uri"])
        for channel in request["InputDataConfig"]
    }
    # Copies outlive the offline session's staging folder.
    kept = {}
    for name, folder in channels.items():
        if folder is not None:
            kept[name] = Path(shutil.copytree(folder, staging / "channels" / name))
    session_context.__exit__(None, None, None)
    return request, kept


def tmp_config(folder, hyperparameters, parser):
    path = folder / "contract.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in hyperparameters.items()))
    return job_config.load_config(path, parser)


class Container:
    """One run of the request's container command as PID 1, on a job tree that persists
    between runs (like the checkpoints SageMaker restores after a spot reclaim)."""

    def __init__(self, request, channels, root):
        self.request, self.root = request, root
        self.opt_ml = root / "opt_ml"
        if not self.opt_ml.exists():
            local_job.prepare_tree(self.opt_ml, request, channels)

    def start(self, command=None, variables=()):
        """Run the request's container command (or `command`, with `variables` besides)."""
        for folder in ["model", "output"]:  # a restarted job starts with empty ones
            shutil.rmtree(self.opt_ml / folder, ignore_errors=True)
        (self.opt_ml / "model").mkdir()
        (self.opt_ml / "output" / "data").mkdir(parents=True)
        algorithm = self.request["AlgorithmSpecification"]
        command = command or [*algorithm["ContainerEntrypoint"], *algorithm["ContainerArguments"]]
        environment = {
            # The image's own: its python3 (here this one) first on PATH.
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root),
            "PIP_NO_INDEX": "1",  # src/requirements.txt is installed already: prove it offline
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # The suite's thread pin (conftest.py), which `env -i` would drop: weights compared
            # with an uninterrupted run are the same only on the same thread count, and
            # train.py's own count follows the machine's load.
            "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
            **self.request.get("Environment", {}),
            "TRAINING_JOB_NAME": JOB_NAME,
            **dict(variables),
        }
        keep = self.root / "opt-as-it-was"
        keep.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [
                *("unshare", "--pid", "--fork", "--mount", "--mount-proc"),
                *("sh", "-c", ENTER_CONTAINER, "enter", self.opt_ml, keep),
                *("env", "-i", *(f"{key}={value}" for key, value in environment.items())),
                *command,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log = []
        return self

    def lines(self):
        for line in self.process.stdout:
            self.log.append(line)
            yield line

    def pid_1(self):
        """PID 1 of the namespace, as this machine numbers it: unshare's one child."""
        (task,) = Path(f"/proc/{self.process.pid}/task").iterdir()
        (child,) = (task / "children").read_text().split()
        return int(child)

    def stop(self):
        """What StopTrainingJob and a spot reclaim do: SIGTERM to PID 1."""
        os.kill(self.pid_1(), signal.SIGTERM)

    def stop_while_training_is_paused(self):
        """stop() while train.py (each process running it) is paused by SIGSTOP, resumed once
        PID 1 says it passed the signal on: train.py stops near where it was paused, however
        long this machine takes to pass the signal on."""
        trainers = container_entry.training_processes(self.process.pid, project.ENTRY_SCRIPT)
        assert trainers, self.output()

        def resume():
            for pid in trainers:
                os.kill(pid, signal.SIGCONT)

        for pid in trainers:
            os.kill(pid, signal.SIGSTOP)
        self.stop()
        # If PID 1 never says so, training goes on after the grace period and the test fails.
        watchdog = threading.Timer(GRACE_SECONDS, resume)
        watchdog.start()
        for line in self.lines():
            if line.startswith("container_entry: SIGTERM passed on"):
                break
        watchdog.cancel()
        resume()

    def wait(self, timeout=600):
        rest, _ = self.process.communicate(timeout=timeout)
        self.log.append(rest)
        return self.process.returncode

    def output(self):
        return "".join(self.log)

    def packed(self, folder):
        """A folder's members as SageMaker packs it (model.tar.gz, output.tar.gz)."""
        archive = local_job.pack(self.opt_ml / folder, self.root / "packed.tar.gz")
        with tarfile.open(archive) as tar:
            return sorted(tar.getnames())


def weights_of(path):
    return torch.load(path, weights_only=True)


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs"


def hyperparameters(**changes):
    values = {"epochs": 2, "batch-size": 64, "train-size": 1000, "test-size": 200, **changes}
    if options.HAS_TRACKING:
        values["tracking"] = "false"
    return values


@pytest.fixture
def dataset_channel(synthetic_dataset):
    return synthetic_dataset


def container_for(hyperparameters_, tmp_path, dataset, **spec_changes):
    request, channels = build_request(hyperparameters_, tmp_path, **spec_changes)
    channels["training"] = dataset
    return Container(request, channels, tmp_path / "job")


def test_a_job_completes_as_pid_1_and_leaves_model_and_output_as_sagemaker_packs_them(
    dataset_channel, tmp_path
):
    container = container_for(hyperparameters(epochs=1), tmp_path, dataset_channel).start()

    code = container.wait()

    log = container.output()
    assert code == 0, log
    assert "Running Basic Script driver" in log and "epoch=1 " in log
    assert container.packed("model") == ["model.json", "model.pt"]
    assert {"metrics.csv", "curves.png"} <= set(container.packed("output/data"))
    assert not (container.opt_ml / "output" / "failure").exists()


def stopped_then_restarted(container):
    """Start, SIGTERM PID 1 once epoch 2 is under way, then start again on the same tree."""
    container.start()
    for line in container.lines():
        if line.startswith("epoch 2 step"):
            container.stop_while_training_is_paused()
            stopped_at = time.monotonic()
            break
    code = container.wait()
    stopped_log = container.output()
    assert code != 0, stopped_log
    assert time.monotonic() - stopped_at < GRACE_SECONDS  # saved and gone before SIGKILL
    said = r"stopped by SIGTERM at (epoch \d+, step \d+); checkpoint in /opt/ml/checkpoints"
    (stop,) = set(re.findall(said, stopped_log))  # every process stopped at the same step
    assert list((container.opt_ml / "checkpoints").glob("checkpoint-*.pt"))
    assert (container.opt_ml / "output" / "failure").is_file()  # the SDK's failure file
    # The model of the last completed epoch, where SageMaker packs model.tar.gz from.
    completed = int(re.match(r"epoch (\d+)", stop)[1]) - 1
    about = json.loads((container.opt_ml / "model" / "model.json").read_text())
    assert about["trained_epochs"] == completed and completed >= 1
    assert container.packed("model") == ["model.json", "model.pt"]

    code = container.start().wait()
    resumed_log = container.output()
    assert code == 0, resumed_log
    (resumed,) = [line for line in resumed_log.splitlines() if "resuming from" in line]
    assert resumed == f"resuming from /opt/ml/checkpoints: {stop}"  # exactly where it stopped
    return stopped_log, resumed_log


def uninterrupted_weights(hyperparameters_, dataset, tmp_path, *launcher):
    """model.pt of the same training run directly, without a stop."""
    arguments = [f"--{key}={value}" for key, value in hyperparameters_.items()]
    folders = [f"--{name}={tmp_path / 'direct' / name}" for name in ("model-dir", "checkpoint-dir")]
    folders.append(f"--output-data-dir={tmp_path / 'direct' / 'output'}")
    done = subprocess.run(
        [
            *launcher,
            str(PROJECT_ROOT / "src" / "train.py"),
            f"--data-dir={dataset}",
            *folders,
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return weights_of(tmp_path / "direct" / "model-dir" / "model.pt")


def test_sigterm_to_pid_1_reaches_train_py_which_checkpoints_and_the_restart_resumes_mid_epoch(
    dataset_channel, tmp_path
):
    # A progress line after every step: the test stops the job once epoch 2 has begun (with
    # hundreds of steps to spare, however late this process reads that line).
    values = hyperparameters(**{"epochs": 8, "batch-size": 16, "log-interval": "1e-9"})
    container = container_for(values, tmp_path, dataset_channel)

    stopped_then_restarted(container)

    assert_same_weights(
        weights_of(container.opt_ml / "model" / "model.pt"),
        uninterrupted_weights(values, dataset_channel, tmp_path, sys.executable),
    )


def test_the_same_under_the_torchrun_driver_with_two_processes(dataset_channel, tmp_path):
    values = hyperparameters(**{"epochs": 8, "batch-size": 8, "log-interval": "1e-9"})
    container = container_for(
        values, tmp_path, dataset_channel, distributed=True, processes_per_host=2
    )

    stopped_log, _ = stopped_then_restarted(container)

    assert "Running Torchrun Driver" in stopped_log
    assert stopped_log.count("stopped by SIGTERM") == 2  # each process stopped and said so
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert_same_weights(
        weights_of(container.opt_ml / "model" / "model.pt"),
        uninterrupted_weights(values, dataset_channel, tmp_path, *torchrun),
    )


# train.py with a DataLoader of two worker processes (forks of train.py, with its command line),
# stopping as train.py does: the step under way takes its batch, then a checkpoint, exit 143.
DATALOADER_TRAINING = """
import signal, sys, time
import torch
from torch.utils.data import DataLoader, Dataset

class Slow(Dataset):
    def __len__(self):
        return 1_000_000

    def __getitem__(self, index):
        time.sleep(0.01)
        return torch.tensor([float(index)])

stop = []
signal.signal(signal.SIGTERM, lambda number, frame: stop.append(number))
loader = DataLoader(Slow(), batch_size=4, num_workers=2, persistent_workers=True)
for step, batch in enumerate(loader, 1):
    print(f"epoch 1 step {step}", flush=True)
    if stop:
        batch = next(iter(loader))  # the workers still serve while the checkpoint is written
        with open("/opt/ml/checkpoints/checkpoint.pt", "w") as file:
            file.write(str(step))
        print(f"stopped by SIGTERM at epoch 1, step {step}; checkpoint written", flush=True)
        sys.exit(128 + signal.SIGTERM)
"""


def test_a_stop_reaches_train_py_but_not_its_dataloader_workers(dataset_channel, tmp_path):
    container = container_for(hyperparameters(), tmp_path, dataset_channel)
    (container.opt_ml / "input" / "data" / "code" / "train.py").write_text(DATALOADER_TRAINING)
    container.start()
    for line in container.lines():
        if line.startswith("epoch 1 step"):
            container.stop_while_training_is_paused()
            break

    code = container.wait()

    log = container.output()
    (passed_on,) = re.findall(r"container_entry: SIGTERM passed on to \[(.*)\]", log)
    assert len(passed_on.split(",")) == 1, log  # train.py alone, not its two workers
    assert "stopped by SIGTERM at epoch 1" in log and "DataLoader worker" not in log, log
    assert (container.opt_ml / "checkpoints" / "checkpoint.pt").is_file()
    assert code == 128 + signal.SIGTERM, log


# A tuning trial under the SageMaker PyTorch image's own entry: PID 1 is a bash
# (start_with_right_hostname.sh) whose child `train` (sagemaker-training, here a Python process
# that runs the trial's program with its hyperparameters and waits) starts the program; neither
# passes a signal on.
IMAGE_ENTRY = r"""
cd /opt/ml/input/data/code
python3 -c 'import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))' python3 "$@"
"""
TRIAL_VARIABLES = {  # what sagemaker-training sets for the program
    "SM_CHANNEL_TRAINING": "/opt/ml/input/data/training",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_OUTPUT_DIR": "/opt/ml/output",
}


def start_trial(container, program, values, aws_variables=()):
    """The trial's container: the image's entry as PID 1, running `program` (sagemaker_program)
    with the trial's hyperparameters as sagemaker-training passes them."""
    arguments = [word for key, value in values.items() for word in (f"--{key}", str(value))]
    command = ["bash", "-c", IMAGE_ENTRY, "image-entry", program, *arguments]
    return container.start(command, {**TRIAL_VARIABLES, **dict(aws_variables)})


def test_the_images_own_entry_never_passes_a_stop_on_to_a_trial(dataset_channel, tmp_path):
    values = hyperparameters(**{"epochs": 3, "batch-size": 64, "log-interval": "1e-9"})
    container = container_for(values, tmp_path, dataset_channel)
    start_trial(container, "train.py", values)
    for line in container.lines():
        if line.startswith("epoch 2 step"):
            container.stop()  # SIGTERM to PID 1, as SageMaker stops a trial
            break

    code = container.wait()

    log = container.output()
    assert code == 0 and "stopped by SIGTERM" not in log, log  # train.py never heard of it
    assert "epoch=3 " in log


def test_a_trial_run_through_container_entry_stops_when_sagemaker_says_it_stops(
    dataset_channel, tmp_path, aws, aws_credentials
):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    values = hyperparameters(**{"epochs": 8, "batch-size": 16, "log-interval": "1e-9"})
    container = container_for(values, tmp_path, dataset_channel)
    request = {key: container.request[key] for key in ("AlgorithmSpecification", "RoleArn")}
    aws.client("sagemaker").create_training_job(
        TrainingJobName=JOB_NAME,
        **request,
        OutputDataConfig=container.request["OutputDataConfig"],
        ResourceConfig=container.request["ResourceConfig"],
        StoppingCondition=container.request["StoppingCondition"],
    )
    trial = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[JOB_NAME]
    trial.training_job_status = trial.secondary_status = "InProgress"
    # The program finds AWS as a trial would (here moto, with the test's dummy keys).
    reach_aws = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    start_trial(container, "container_entry.py", values, {**reach_aws, **aws_credentials})
    for line in container.lines():
        if line.startswith("epoch 2 step"):
            trial.training_job_status = trial.secondary_status = "Stopping"  # StopTrainingJob
            container.stop_while_training_is_paused()  # and SIGTERM to PID 1, which drops it
            break

    code = container.wait()

    log = container.output()
    assert code == 128 + signal.SIGTERM, log
    assert re.search(r"stopped by SIGTERM at epoch \d+, step \d+; checkpoint in ", log), log
    assert list((container.opt_ml / "checkpoints").glob("checkpoint-*.pt"))
