"""A job's results on this machine: result/jobs/<timestamp>/ with

    model/      model.tar.gz extracted (model.pt, model.json)
    output/     output.tar.gz extracted (metrics.csv, plots)
    logs.txt    every log line of every host, with timestamps
    exp.json    job name, status, failure reason, image, instance, hyperparameters, S3 URIs,
                final metrics, the bill (billable seconds, the price, the cost, spot's saving)
                and where the start-up went (job_progress.startup)

The same for SageMaker jobs (fetched from S3 and CloudWatch Logs) and --local runs.
"""

import itertools
import json
import re
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from launcher import aws_env, job_checks, job_cost, job_progress

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL_STATUSES = {"Completed", "Failed", "Stopped"}  # of training and tuning jobs alike
# Apart from result/model/, where local training saves its model.
EXPANSION_RATIO = 50  # model weights hardly compress; a 50x ratio is a bomb, not a model
EXPANSION_FLOOR = 256 * 1024 * 1024
# SageMaker says "Requested resource not found."; moto "Could not find training job ...".
NOT_FOUND_WORDS = ("not found", "could not find")
LOG_TAIL = 15  # log lines a failed job's triage shows
# Known causes of a failed job: (what its failure reason or log says, the cause, the fix). The
# fix may name the match's first group {0}, and {quota}: the Service Quota the job needs.
FAILURE_CAUSES = [
    (
        r"no training step finished in ([\d.]+) s",  # src/watchdog.py's failure file
        "the run hung: no training step finished within --stall-timeout",
        "logs.txt holds every thread's stack where it hung (in a DataLoader worker: try "
        "num-workers: 0; in a collective: another process died, see its lines); a relaunch "
        "resumes from the last checkpoint; raise stall-timeout (now {0} s) if a step takes longer",
    ),
    (
        r"ResourceLimitExceeded",
        "a Service Quota of the account is too low for this job",
        "ask for more of '{quota}' in Service Quotas (Amazon SageMaker), or choose another "
        "--instance-type; python scripts/doctor.py shows the quotas",
    ),
    (
        r"CapacityError|[Ii]nsufficient capacity",
        "SageMaker had no capacity of this instance type",
        "launch again later, or give other types SageMaker may fall back to in order: "
        "--instance-fallback TYPE ... (and --max-pending to bound the wait)",
    ),
    (
        r"AccessDenied.*(?:s3|S3|bucket)|(?:s3|S3).*(?:AccessDenied|403)",
        "the execution role cannot reach the S3 data",
        "allow the role s3:GetObject, s3:PutObject and s3:ListBucket on the bucket (the managed "
        "policy AmazonSageMakerFullAccess covers sagemaker-* buckets); python scripts/doctor.py",
    ),
    (
        r"CUDA out of memory|OutOfMemoryError|MemoryError|code 137\b|\bKilled\b",
        "the job ran out of memory",
        "lower batch-size in the config, or choose an instance type with more (GPU) memory",
    ),
    (
        r"ModuleNotFoundError: No module named '([^'.]+)",
        "a Python package is missing in the container",
        "add {0} to src/requirements.txt (installed when the job starts)",
    ),
]


def wait_until_ended(names, status_line, poll_seconds, after_each=None):
    """Poll until every job (training or tuning) has a terminal status. status_line(name) ->
    (status, the line to show): printed when it changes; after_each(name): after each poll
    (a single job's new log lines)."""
    shown, pending = {}, list(names)
    while pending:
        for name in list(pending):
            status, line = status_line(name)
            if line != shown.get(name):
                print(line)
                shown[name] = line
            if after_each:
                after_each(name)
            if status in TERMINAL_STATUSES:
                pending.remove(name)
        if pending:
            time.sleep(poll_seconds)


def job_timestamp(job_name):
    """digits-exp001-20250102030405 -> 20250102030405 (now, for names without one)."""
    match = re.search(r"-(\d{14})$", job_name)
    return match.group(1) if match else datetime.now().strftime("%Y%m%d%H%M%S")


def results_folder(out_dir, job_name, name=None):
    """The folder of a job: the one whose exp.json names it, else a new <name>[-<n>], created
    here and now, so that two launches in the same second never share one."""
    out_dir = Path(out_dir)
    for exp_file in sorted(out_dir.glob("*/exp.json")):
        try:
            if json.loads(exp_file.read_text()).get("job_name") == job_name:
                return exp_file.parent
        except (OSError, ValueError):
            continue
    name = name or job_timestamp(job_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        folder = out_dir / (name if number == 1 else f"{name}-{number}")
        try:
            folder.mkdir()  # atomic: exactly one launch gets each name
            return folder
        except FileExistsError:
            continue


def expansion_limit(archive):
    """How many bytes an archive may expand to: far more than any model or output compresses
    from, far less than a decompression bomb asks for."""
    return max(EXPANSION_RATIO * Path(archive).stat().st_size, EXPANSION_FLOOR)


def extract_archive(archive, target):
    """Extract with tarfile's data filter, member by member; returns the members refused.

    Nothing lands outside target: no absolute or ../ paths, no links pointing out of it; a
    member that cannot be written (a name too long for this disk) or that would take the
    archive past expansion_limit is refused, and the others are still extracted.
    """
    name = Path(archive).name
    if not hasattr(tarfile, "data_filter"):
        return [f"{name}: this Python lacks tarfile's data filter; use 3.10.12+"]
    target.mkdir(parents=True, exist_ok=True)
    limit = expansion_limit(archive)
    refused, budget = [], limit
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.size > budget:
                    refused.append(
                        f"refused {member.name!r} in {name}: {member.size:,} bytes would expand "
                        f"the {Path(archive).stat().st_size:,}-byte archive past {limit:,} bytes"
                    )
                    continue
                try:
                    tar.extract(member, target, filter="data")
                    budget -= member.size
                except tarfile.FilterError as error:
                    refused.append(f"refused {member.name!r} in {name}: {error}")
                except OSError as error:
                    shown = member.name if len(member.name) <= 80 else f"{member.name[:77]}..."
                    refused.append(f"refused {shown!r} in {name}: {error.strerror or error}")
    except (tarfile.TarError, EOFError, OSError) as error:
        refused.append(f"cannot read {name}: {error}")
    return refused


class JobLogs:
    """A job's CloudWatch log streams (one per host): every page, in order, with timestamps.

    read_new() returns the lines that arrived since its last call, so the same reader serves
    printing while waiting and the complete logs.txt at the end.
    """

    def __init__(self, logs, job_name, page_size=None):
        self.logs, self.job_name, self.page_size = logs, job_name, page_size
        self.tokens = {}  # stream -> forward token after its last line read

    def streams(self):
        from botocore.exceptions import ClientError

        names = []
        try:
            for page in self.logs.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job_name}/"
            ):
                names += [stream["logStreamName"] for stream in page.get("logStreams", [])]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        return sorted(names)

    def read_new(self):
        """[(host, epoch ms, message)] not returned before, oldest first."""
        events = []
        for stream in self.streams():
            host = stream.split("/", 1)[1]
            arguments = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if self.page_size:
                arguments["limit"] = self.page_size
            token = self.tokens.get(stream)
            while True:
                page = self.logs.get_log_events(
                    **arguments, **({"nextToken": token} if token else {})
                )
                events += [(host, event["timestamp"], event["message"]) for event in page["events"]]
                # Pages may be empty midway; the end is when the token it was given comes back.
                if page.get("nextForwardToken") in (None, token):
                    break
                token = page["nextForwardToken"]
            self.tokens[stream] = token
        return sorted(events, key=lambda event: event[1])


def format_log(events):
    lines = []
    for host, milliseconds, message in events:
        stamp = datetime.fromtimestamp(milliseconds / 1000, timezone.utc)
        lines.append(f"{stamp.isoformat(timespec='milliseconds')} [{host}] {message.rstrip()}")
    return "\n".join(lines) + "\n" if lines else ""


def iso(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def summarize(description, mode):
    """exp.json's content, from a DescribeTrainingJob response (or --local's equivalent)."""
    tags = {tag["Key"]: tag["Value"] for tag in description.get("Tags", [])}
    channels = {
        channel["ChannelName"]: channel for channel in description.get("InputDataConfig", [])
    }

    def channel_uri(name):
        return channels.get(name, {}).get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")

    job_name = description["TrainingJobName"]
    output_path = description.get("OutputDataConfig", {}).get("S3OutputPath", "").rstrip("/")
    output = f"{output_path}/{job_name}/output" if output_path else None
    resources = description.get("ResourceConfig", {})
    # Among instance preferences, the one SageMaker selected (and billed).
    instance_type, instance_count = job_cost.instances(description)
    return {
        "job_name": job_name,
        "mode": mode,
        "status": description["TrainingJobStatus"],
        "secondary_status": description.get("SecondaryStatus"),
        "failure_reason": description.get("FailureReason"),
        "experiment": tags.get("experiment"),
        "config": tags.get("config"),
        "image": description.get("AlgorithmSpecification", {}).get("TrainingImage"),
        "instance_type": instance_type,
        "instance_count": instance_count,
        "instance_preferences": [
            choice["InstanceType"] for choice in resources.get("InstancePreferences", [])
        ],
        "spot": bool(description.get("EnableManagedSpotTraining")),
        "keep_alive_seconds": resources.get("KeepAlivePeriodInSeconds"),
        "input_mode": channels.get("training", {}).get("InputMode"),
        "hyperparameters": description.get("HyperParameters", {}),
        "dataset_uri": channel_uri("training"),
        "code_uri": channel_uri("code"),
        "model_uri": description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        or (output and f"{output}/model.tar.gz"),
        "output_uri": output and f"{output}/output.tar.gz",
        "checkpoint_uri": description.get("CheckpointConfig", {}).get("S3Uri"),
        "created": iso(description.get("CreationTime")),
        "started": iso(description.get("TrainingStartTime")),
        "ended": iso(description.get("TrainingEndTime")),
        "training_seconds": description.get("TrainingTimeInSeconds"),
        "billable_seconds": description.get("BillableTimeInSeconds"),
        "warm_pool_billable_seconds": description.get("WarmPoolStatus", {}).get(
            "ResourceRetainedBillableTimeInSeconds"
        ),
        "final_metrics": {
            metric["MetricName"]: metric["Value"]
            for metric in description.get("FinalMetricDataList", [])
        },
    }


def billed(summary, region):
    """The summary with its bill (job_cost.bill) and why the price is unknown, if it is; a local
    run bills nothing."""
    price, reason = None, None
    if summary["mode"] == "sagemaker":
        price, reason = job_cost.hourly_price(region, summary["instance_type"])
    return summary | job_cost.bill(summary, price) | {"price_unknown": reason}


def triage(summary, log_events):
    """What a failed or stopped job's exp.json says of it: the cause and fix when it is a known
    one (FAILURE_CAUSES), and the last lines of its log; None for any other status."""
    if summary["status"] not in {"Failed", "Stopped", "NotCreated"}:
        return None
    tail = [message.rstrip() for _, _, message in log_events][-LOG_TAIL:]
    found = {"cause": None, "fix": None, "log_tail": tail}
    if summary["status"] == "Stopped":
        return found | {
            "cause": "stopped: by a stop request, at --max-run, or spot's --max-wait",
            "fix": "launch the same config again: it resumes from the checkpoints in "
            f"{summary.get('checkpoint_uri') or 'its checkpoint folder'}; model/ holds the "
            "model of the last completed epoch; raise --max-run (or --max-wait) if it stopped "
            "too soon",
        }
    text = "\n".join([summary.get("failure_reason") or "", *tail])
    usage = "spot" if summary.get("spot") else "on-demand"
    usage = "warm pool" if summary.get("keep_alive_seconds") else usage
    for pattern, cause, fix in FAILURE_CAUSES:
        match = re.search(pattern, text)
        if match:
            quota = job_checks.quota_name(summary.get("instance_type"), usage)
            return found | {"cause": cause, "fix": fix.format(*match.groups(), quota=quota)}
    if not log_events and summary["status"] == "Failed":
        return found | {
            "cause": "the job failed before train.py printed anything",
            "fix": "check that the image exists for this region and instance type (--image-uri) "
            "and that the dataset URI holds the dataset: python scripts/doctor.py",
        }
    return found


def save_results(folder, summary, archives, log_events):
    """Extract the archives and write logs.txt and exp.json; returns what exp.json holds: the
    summary, the problems met ("problems") and, for a failed job, its triage."""
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, archive in archives.items():
        if archive is None:
            if summary["status"] == "Completed":
                problems.append(f"{name}.tar.gz was not found")
            continue
        problems += extract_archive(archive, folder / name)
    log_text = format_log(log_events)
    if not log_text:
        log_text = f"(no log lines yet for {summary['job_name']}: status {summary['status']})\n"
    (folder / "logs.txt").write_text(log_text, encoding="utf-8")
    summary = {**summary, "results_dir": str(folder), "problems": problems}
    summary["triage"] = triage(summary, log_events)
    (folder / "exp.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def is_not_found(error):
    """A SageMaker or S3 answer saying the job or object does not exist."""
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return False
    details = error.response.get("Error", {})
    return details.get("Code") in {"404", "NoSuchKey", "NotFound", "ResourceNotFound"} or (
        details.get("Code") == "ValidationException"
        and any(words in str(details.get("Message", "")).lower() for words in NOT_FOUND_WORDS)
    )


def download_if_present(s3, uri, target):
    from botocore.exceptions import ClientError

    bucket, key = aws_env.split_s3_uri(uri)
    try:
        s3.download_file(bucket, key, str(target))
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return target


def fetch_job(session, job_name, folder):
    """Download a SageMaker job's artifacts and logs into folder; returns (summary, problems)."""
    sagemaker = session.client("sagemaker")
    description = sagemaker.describe_training_job(TrainingJobName=job_name)
    # DescribeTrainingJob leaves the tags out; they name the experiment and the config.
    tags = sagemaker.list_tags(ResourceArn=description["TrainingJobArn"]).get("Tags", [])
    summary = billed(summarize({**description, "Tags": tags}, "sagemaker"), session.region_name)
    s3 = session.client("s3")
    with tempfile.TemporaryDirectory(prefix="sm-fetch-") as scratch:
        archives = {
            "model": download_if_present(s3, summary["model_uri"], Path(scratch, "model.tar.gz")),
            "output": download_if_present(
                s3, summary["output_uri"], Path(scratch, "output.tar.gz")
            ),
        }
        log_events = JobLogs(session.client("logs"), job_name).read_new()
        summary["startup"] = job_progress.startup(description, log_events)
        saved = save_results(folder, summary, archives, log_events)
    return saved, saved["problems"]
