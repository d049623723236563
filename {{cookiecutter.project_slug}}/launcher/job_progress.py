"""A job in flight: where its start-up went, how far training is, when it ends, what it costs.

Read from DescribeTrainingJob (SecondaryStatusTransitions, the start time, the instance SageMaker
selected) and from the job's log lines: the SDK's sm_train.sh says when it installs
src/requirements.txt and starts its driver, train.py when data and model are ready
(`device=...`), when the first step is done, each progress line and each epoch's metric line.
"""

import re
from datetime import datetime, timezone

from launcher import job_cost

# Start-up, in the order a job goes through it: (exp.json key, what a person reads).
PHASES = [
    ("waiting_for_capacity", "waiting for capacity"),
    ("provisioning", "provisioning"),
    ("data_download", "data download"),
    ("image_download", "image download and container start"),
    ("requirements", "installing src/requirements.txt"),
    ("loading", "loading data and model"),
    ("first_step", "first step"),
]
# SageMaker's secondary statuses before training (botocore's SecondaryStatus enum).
STATUS_PHASES = {
    "Pending": "waiting_for_capacity",
    "Starting": "provisioning",
    "LaunchingMLInstances": "provisioning",
    "PreparingTrainingStack": "provisioning",
    "Downloading": "data_download",
    "DownloadingTrainingImage": "image_download",
}
# The log lines that end a phase: sm_train.sh's (SDK v3's templates.py) and train.py's.
LOG_MARKS = {
    "requirements": re.compile(r"^Installing requirements$"),
    "driver": re.compile(r"^Running .*[Dd]river$"),
    "setup": re.compile(r"^device=\w+"),
    "first_step": re.compile(r"^epoch \d+ step \d+/\d+: first step done"),
}
STEP_LINE = re.compile(r"^epoch (\d+) step (\d+)/(\d+)")
EPOCH_LINE = re.compile(r"^epoch=(\d+) ")
LEAD_HOST = "algo-1"  # SageMaker's first host; its log stream is algo-1-<number>


def seconds_between(start, end):
    return max(0.0, (end - start).total_seconds())


def from_log(milliseconds):
    return datetime.fromtimestamp(milliseconds / 1000, timezone.utc)


def lead_host_events(events):
    """The lines of the first host (all lines when no host is named as SageMaker names them)."""
    lead = [event for event in events if str(event[0]).startswith(f"{LEAD_HOST}-")]
    return lead or list(events)


def startup(description, events):
    """{phase: seconds} from CreateTrainingJob to the first training step (PHASES' keys, as far
    as the job got), with "total" once the first step is done; None before any of it is known."""
    seconds = {}
    for transition in description.get("SecondaryStatusTransitions") or []:
        phase = STATUS_PHASES.get(transition["Status"])
        if phase and transition.get("EndTime"):
            spent = seconds_between(transition["StartTime"], transition["EndTime"])
            seconds[phase] = seconds.get(phase, 0.0) + spent
    lines = sorted(lead_host_events(events), key=lambda event: event[1])
    marks = {}
    for _, milliseconds, message in lines:
        for name, pattern in LOG_MARKS.items():
            if name not in marks and pattern.search(message.strip()):
                marks[name] = from_log(milliseconds)
    training = next(
        (
            transition["StartTime"]
            for transition in description.get("SecondaryStatusTransitions") or []
            if transition["Status"] == "Training"
        ),
        None,
    )
    container_start = from_log(lines[0][1]) if lines else None
    if "image_download" not in seconds and training and container_start:
        seconds["image_download"] = seconds_between(training, container_start)
    if "requirements" in marks and "driver" in marks:
        seconds["requirements"] = seconds_between(marks["requirements"], marks["driver"])
    started = marks.get("driver") or container_start
    if started and "setup" in marks:
        seconds["loading"] = seconds_between(started, marks["setup"])
    if "setup" in marks and "first_step" in marks:
        seconds["first_step"] = seconds_between(marks["setup"], marks["first_step"])
    if "first_step" in marks and description.get("CreationTime"):
        seconds["total"] = seconds_between(description["CreationTime"], marks["first_step"])
    if not seconds:
        return None
    return {key: round(value, 1) for key, value in seconds.items()}


def duration(seconds):
    """95 -> "1 min 35 s"; 40 -> "40 s"; 4000 -> "1 h 6 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def startup_line(measured):
    """One line: the time to the first step and its phases, the longest first."""
    if not measured:
        return None
    names = dict(PHASES)
    parts = sorted(
        ((value, names[key]) for key, value in measured.items() if key in names and value >= 1),
        reverse=True,
    )
    shown = ", ".join(f"{name} {duration(value)}" for value, name in parts)
    if "total" in measured:
        return f"start-up {duration(measured['total'])} to the first step: {shown}"
    return f"start-up so far: {shown}"


def total_epochs(hyperparameters, default_epochs):
    """The epochs a job trains, from its hyperparameters (train.py's default when not set);
    None for a job that trains every fold in turn (its epoch lines restart with each fold)."""
    folds = int(hyperparameters.get("folds", 0) or 0)
    if folds and not int(hyperparameters.get("fold", 0) or 0):
        return None
    return int(hyperparameters.get("epochs", default_epochs))


class Progress:
    """How far a running job's training is, from its log lines: positions in epochs (2.5: half
    of epoch 3 done) at the times they were reached, since the last start of train.py."""

    def __init__(self, epochs):
        self.epochs = epochs
        # (time, position) of the first and the latest line since the start: the pace needs no
        # more, however long the job logs.
        self.first = self.last = None

    def read(self, events):
        for _, milliseconds, message in sorted(lead_host_events(events), key=lambda e: e[1]):
            message = message.strip()
            at = from_log(milliseconds)
            if LOG_MARKS["first_step"].search(message):
                self.first = None  # a restart (spot, a relaunch): its own pace from here
            step = STEP_LINE.search(message)
            epoch = EPOCH_LINE.search(message)
            if step:
                number, done, steps = map(int, step.groups())
                self.reached(at, number - 1 + done / steps)
            elif epoch:
                self.reached(at, float(epoch.group(1)))

    def reached(self, at, position):
        self.last = (at, position)
        self.first = self.first or self.last

    @property
    def position(self):
        return self.last[1] if self.last else None

    def eta(self, now):
        """Seconds until the last epoch ends, at the pace since the first step; None until two
        positions are known (or the epoch count is not)."""
        if self.epochs is None or self.first is None or self.first is self.last:
            return None
        (first_time, first), (last_time, last) = self.first, self.last
        elapsed = (last_time - first_time).total_seconds()
        if last <= first or elapsed <= 0:
            return None
        left = (self.epochs - last) * elapsed / (last - first)
        return max(0.0, left - seconds_between(last_time, now))


def cost_so_far(description, price, now):
    """On-demand USD billed so far: from the start on the instances (TrainingStartTime, which
    covers the data download) to its end or now, on every instance; 0 before the start."""
    started = description.get("TrainingStartTime")
    if price is None or started is None:
        return None if price is None else 0.0
    _, count = job_cost.instances(description)
    ended = description.get("TrainingEndTime") or now
    return seconds_between(started, ended) / 3600 * count * price


def projected_cost(description, price, now, eta):
    """Cost so far plus the rest of training at the same price (None when either is unknown),
    and never past what --max-run bounds."""
    so_far = cost_so_far(description, price, now)
    if so_far is None or eta is None:
        return None
    _, count = job_cost.instances(description)
    max_run = description.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
    projected = so_far + eta / 3600 * count * price
    if max_run:
        projected = min(projected, max_run / 3600 * count * price)
    return projected


class JobWatch:
    """One job followed while it runs: its new log lines, how far it is, its ETA and cost."""

    def __init__(self, reader, job_name, default_epochs, region):
        """reader: the job's job_results.JobLogs."""
        self.job_name, self.region = job_name, region
        self.reader = reader
        self.default_epochs = default_epochs
        self.progress = None
        self.description = {}
        self.prices = {}

    def read_log(self):
        """The log lines that came since the last call, read into the progress (`description`,
        the job's latest DescribeTrainingJob answer, says how many epochs it trains)."""
        if self.progress is None:
            hyperparameters = self.description.get("HyperParameters") or {}
            self.progress = Progress(total_epochs(hyperparameters, self.default_epochs))
        events = self.reader.read_new()
        self.progress.read(events)
        return events

    def price(self):
        instance_type, _ = job_cost.instances(self.description)
        if instance_type not in self.prices:
            self.prices[instance_type], _ = job_cost.hourly_price(self.region, instance_type)
        return self.prices[instance_type]

    def running(self):
        return self.description.get("TrainingJobStatus") == "InProgress"

    def eta(self, now):
        return self.progress.eta(now) if self.progress and self.running() else None

    def projected(self, now):
        """What the job will have cost by its end: projected while it trains, the cost so far
        once it has ended (None while unknown)."""
        if not self.running():
            return cost_so_far(self.description, self.price(), now)
        return projected_cost(self.description, self.price(), now, self.eta(now))

    def line(self, now):
        """`<job>: epoch 2.4 of 5, about 6 min 10 s left; cost so far $0.04, projected $0.11`
        (by the end), or None before training has begun."""
        if not self.progress or self.progress.position is None or not self.running():
            return None
        epochs = self.progress.epochs
        where = f"epoch {self.progress.position:.1f}" + (f" of {epochs}" if epochs else "")
        eta = self.eta(now)
        if eta is not None:
            where += f", about {duration(eta)} left"
        so_far = cost_so_far(self.description, self.price(), now)
        if so_far is not None:
            where += f"; cost so far {job_cost.dollars(so_far)}"
            projected = self.projected(now)
            if projected is not None:
                where += f", projected {job_cost.dollars(projected)}"
        return f"{self.job_name}: {where}"


def over_budget(watches, max_cost, now):
    """(projected USD of the jobs together, the running jobs) once that projection passes
    max_cost, else None (also while any projection is unknown)."""
    if max_cost is None:
        return None
    projections = [watch.projected(now) for watch in watches]
    if any(projection is None for projection in projections) or sum(projections) <= max_cost:
        return None
    return sum(projections), [watch for watch in watches if watch.running()]
