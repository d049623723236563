"""PID 1 of the training container: runs SageMaker's own start command, and passes a stop on.

SageMaker stops a job (StopTrainingJob, a spot reclaim, MaxRuntimeInSeconds) with SIGTERM to the
container's PID 1, then SIGKILL after a grace period (120 s). SDK v3 makes PID 1 a bash that runs
sm_train.sh, which runs the SDK's driver, which runs train.py: a bash as PID 1 ignores SIGTERM,
so train.py would never hear of the stop and would lose everything since its last checkpoint.

launcher/job_request.py puts this file in front of the SDK's command:

    python3 container_entry.py --entry-script train.py -- /bin/bash -c "... sm_train.sh"

It runs the command unchanged as its child (requirements, SM_* variables, the failure file and
the exit code stay the SDK's), and on SIGTERM or SIGINT sends the signal to the topmost process
of each subtree that runs the entry script: train.py under the basic driver, every worker under
torchrun, never their own children (DataLoader workers, which train.py ends itself: a signal to
them would kill its data pipeline mid-checkpoint). The shells and the driver are left alone, as
they carry train.py's log lines and exit code to the end. If no training process runs yet
(requirements are installing), the whole command is stopped. A process that ends meanwhile is
skipped: PID 1 must outlive every one of them. Standard library only: it runs before
src/requirements.txt is installed. On a warm pool it points pip's user installs into the pool's
persistent cache (warm_pool_environment), so a reused instance installs only what changed.

A tuning job's trials cannot be given a container command: the image's own entry runs them
(SageMaker PyTorch images: PID 1 is a bash running start_with_right_hostname.sh, whose child
runs the program the trial names), and that bash passes no SIGTERM on either. So a trial's
program is this file, which runs train.py with the trial's arguments (`python3
container_entry.py --epochs 3 ...`) and, besides passing on a signal it gets, asks SageMaker for
its own job's status every STATUS_POLL_SECONDS: once it says Stopping (the tuning job stopped,
or stopped the trial early), train.py gets SIGTERM, well within the grace period. boto3 is there:
the image's entry installs the requirements before it runs the program.
"""

import argparse
import os
import signal
import site
import subprocess
import sys
import threading
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
TRIAL_ENTRY_SCRIPT = "train.py"  # what a tuning trial runs (launcher/project.py's ENTRY_SCRIPT)
STATUS_POLL_SECONDS = 10  # far inside the 120 s between SIGTERM and SIGKILL
STOPPING_STATUSES = {"Stopping", "Stopped"}
# Set by the launcher with --keep-alive: the warm pool's persistent cache, kept on the instance
# from one job to the next.
WARM_POOL_CACHE_VARIABLE = "WARM_POOL_CACHE"


def command_line(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # gone meanwhile
        return []


def parent_of(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in ( ) may hold spaces


def process_parents():
    """{pid: parent pid} of every process this /proc shows."""
    return {int(name): parent_of(name) for name in os.listdir("/proc") if name.isdigit()}


def descendants(root, parents):
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def runs_script(argv, script):
    """True when argv is `<python> [options] <script> ...` (not, e.g., torchrun ... script)."""
    if not argv or not Path(argv[0]).name.startswith("python"):
        return False
    first = next((word for word in argv[1:] if word and not word.startswith("-")), "")
    return Path(first).name == script


def training_processes(root, script):
    """The processes of root's tree, root included, that run the script and descend from no
    other such process: train.py, or each torchrun worker, without the children they fork."""
    parents = process_parents()
    tree = descendants(root, parents) | {root}
    training = {pid for pid in tree if runs_script(command_line(pid), script)}

    def under_another(pid):
        parent = parents.get(pid)
        while parent in tree:
            if parent in training:
                return True
            parent = parents.get(parent)
        return False

    return sorted(pid for pid in training if not under_another(pid))


def send(pid, number, to_group=False):
    """Send the signal; False when the process (or group) has ended meanwhile."""
    try:
        (os.killpg if to_group else os.kill)(pid, number)
    except ProcessLookupError:
        return False
    return True


def pass_stop(root, script, number):
    """Pass a stop signal on (module doc); returns the processes it reached, or None when none
    ran the script yet and the whole command was stopped."""
    found = training_processes(root, script)
    if not found:  # nothing to save yet: stop everything
        send(root, number, to_group=True)
        return None
    return [pid for pid in found if send(pid, number)]


def exit_status(status):
    """A shell's exit code for a wait status (128 + the signal for a killed process)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def watch_own_status(job_name, stop_training, ended, poll_seconds=STATUS_POLL_SECONDS):
    """Until `ended` is set: poll DescribeTrainingJob of this job; once it is stopping, call
    stop_training() (once). Without boto3 or the permission, say so once and stop watching."""
    try:
        import boto3

        sagemaker = boto3.client("sagemaker")
    except Exception as error:
        print(f"container_entry: cannot watch {job_name}'s status: {error}", flush=True)
        return
    while not ended.wait(poll_seconds):
        try:
            found = sagemaker.describe_training_job(TrainingJobName=job_name)
        except Exception as error:
            print(f"container_entry: cannot watch {job_name}'s status: {error}", flush=True)
            return
        if {found["TrainingJobStatus"], found.get("SecondaryStatus")} & STOPPING_STATUSES:
            stop_training(signal.SIGTERM)
            return


def warm_pool_environment(environment, in_virtualenv, user_site):
    """The command's environment. On a warm pool (WARM_POOL_CACHE set), pip installs
    src/requirements.txt as user packages into the pool's cache, which Python puts on sys.path:
    the next job on the instance finds them installed. Not where user packages are invisible (a
    virtualenv, user site off): there pip's download cache (PIP_CACHE_DIR) is all it keeps."""
    cache = environment.get(WARM_POOL_CACHE_VARIABLE)
    if not cache or in_virtualenv or not user_site:
        return dict(environment)
    return {**environment, "PYTHONUSERBASE": f"{cache}/python", "PIP_USER": "1"}


def parse_args(argv):
    """(entry script, command, whether a tuning trial runs it): `--entry-script S -- COMMAND` as
    PID 1, else a trial's hyperparameters (`--epochs 3 ...`) for train.py."""
    if not argv or argv[0].split("=")[0] != "--entry-script":
        script = Path(__file__).with_name(TRIAL_ENTRY_SCRIPT)
        return TRIAL_ENTRY_SCRIPT, [sys.executable, str(script), *argv], True
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry-script", required=True, help="file name of the training script")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return args.entry_script, command, False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    entry_script, command, trial = parse_args(argv)
    in_virtualenv = sys.prefix != sys.base_prefix
    environment = warm_pool_environment(os.environ, in_virtualenv, site.ENABLE_USER_SITE)
    if environment.get("PIP_USER"):
        print(f"container_entry: packages install into {environment['PYTHONUSERBASE']}", flush=True)
    child = subprocess.Popen(command, start_new_session=True, env=environment)
    stop, ended = [], threading.Event()

    def pass_on(number, frame=None):
        stop.append(number)
        targets = pass_stop(child.pid, entry_script, number)
        # Said once it is done: a reader of this line knows that the signal was sent.
        said = "all" if targets is None else targets
        print(f"container_entry: {signal.Signals(number).name} passed on to {said}", flush=True)

    for number in STOP_SIGNALS:
        signal.signal(number, pass_on)
    if trial and os.environ.get("TRAINING_JOB_NAME"):  # SageMaker names the job it runs
        job_name = os.environ["TRAINING_JOB_NAME"]

        def stop_unless_stopping(number):  # a signal may have come first
            if not stop:
                pass_on(number)

        threading.Thread(
            target=watch_own_status, args=(job_name, stop_unless_stopping, ended), daemon=True
        ).start()
    # As PID 1, every orphaned process is ours to reap; the command's own status is the result.
    result = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child.pid:
            result = exit_status(status)
            ended.set()
            if not stop:  # finished on its own: leftovers end with the container
                break
    ended.set()
    return result if result is not None else 128 + (stop[0] if stop else signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
