#!/usr/bin/env python
"""Train the MNIST CNN, on this machine or as a SageMaker training job: same file, same options.

    python src/train.py --epochs 2        # dataset/ -> result/model/model.pt, result/output/
    torchrun --standalone --nproc_per_node=2 src/train.py   # data-parallel, 2 processes

In a job, SageMaker passes the hyperparameters as `--key value` arguments and the folders
through SM_* variables (see options.py). Every epoch prints one line that the job's metric
definitions parse:  epoch=1 train_loss=0.2345 test_loss=0.0567 test_accuracy=0.9821
"""

import contextlib
import csv
import functools
import hashlib
import math
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F

import checkpoint
import distributed
from data import DatasetError, batches, load_mnist
from model import Net
from options import RUN_CONTROLS, build_parser
from plots import plot_confusion_matrix, plot_curves

METRICS = ["epoch", "train_loss", "test_loss", "test_accuracy"]
# With several processes, they agree every this many steps whether a signal asks them to stop.
STOP_CHECK_STEPS = 10


def parse_config(argv=None):
    return build_parser().parse_args(argv)


def pick_device(local_rank=0):
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_reproducible(seed, deterministic):
    torch.manual_seed(seed)  # CPU and every GPU
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)


def mixed_precision(device, enabled):
    """(autocast context factory, gradient scaler): bfloat16 or float16 on CUDA, else off."""
    dtype = None
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    autocast = functools.partial(
        torch.autocast, device.type, dtype=dtype, enabled=dtype is not None
    )
    # float16 gradients can underflow; the scaler keeps them in range (bfloat16 needs none).
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return autocast, scaler


def settings_of(config, train_labels, test_labels, processes):
    """The run's identity: every option but the run controls, the data (sizes, digest of the
    labels) and the number of processes."""
    digest = hashlib.sha1(train_labels.cpu().numpy().tobytes()).hexdigest()[:12]
    data = f"{len(train_labels)} train / {len(test_labels)} test, labels {digest}"
    options = {name: value for name, value in vars(config).items() if name not in RUN_CONTROLS}
    settings = {**options, "data": data}
    return {**settings, "processes": processes.world_size} if processes.active else settings


@torch.no_grad()
def evaluate(model, images, labels, device, autocast, processes):
    """(mean loss, accuracy in 0..1, confusion matrix [true][predicted]) on a split, summed
    over the processes' shards of it."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    for batch_images, batch_labels in batches(images, labels, 500, device):
        with autocast():
            logits = model(batch_images)
        loss_sum += F.cross_entropy(logits.float(), batch_labels, reduction="sum")
        predictions.append(logits.argmax(dim=1))
    true = labels.to(device)
    confusion = torch.bincount(true * 10 + torch.cat(predictions), minlength=100).double()
    sums = distributed.total(torch.cat([loss_sum.double().reshape(1), confusion]), processes)
    confusion, count = sums[1:].reshape(10, 10), sums[1:].sum()
    accuracy = (confusion.trace() / count).item()
    return sums[0].item() / count.item(), accuracy, confusion.long().tolist()


def write_metrics(history, path):
    def write(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=METRICS)
            writer.writeheader()
            writer.writerows(rows)

    checkpoint.write_atomically(path, write, history)


class Diverged(Exception):
    """The loss became NaN or infinite: the weights are garbage and nothing is saved."""

    def __init__(self, epoch, row, config):
        losses = f"train_loss={row['train_loss']:.4g} test_loss={row['test_loss']:.4g}"
        super().__init__(
            f"training diverged in epoch {epoch} ({losses}); nothing saved from it: lower --lr "
            f"(now {config.lr:g}) or --batch-size, or raise --weight-decay"
        )


def open_tracker(config, processes):
    """src/tracking.py's tracker when the project has it and --tracking is on, else None."""
    if not getattr(config, "tracking", False) or not processes.main:
        return contextlib.nullcontext()
    import tracking  # here, not at the top: the tracking library takes seconds to import

    return tracking.Tracker(config)


def train(config):
    """Train as `config` (parse_config's namespace) says; return the per-epoch metric rows.

    Resumes from the checkpoint in config.checkpoint_dir when it has the same settings,
    saves one after every epoch, and on SIGTERM/SIGINT saves one and raises
    checkpoint.Interrupted. Started by torchrun, it trains data-parallel (distributed.py).
    """
    processes = distributed.start()
    try:
        return train_processes(config, processes)
    finally:
        distributed.finish(processes)


def train_processes(config, processes):
    main = processes.main  # only the main process prints and writes

    def say(*text):
        if main:
            print(*text)

    device = pick_device(processes.local_rank)
    if processes.active and device.type == "mps":
        device = torch.device("cpu")  # no process-group backend for Apple GPUs
    make_reproducible(config.seed, config.deterministic)
    data = load_mnist(config.data_dir, device, config.train_size or None, config.test_size or None)
    (train_images, train_labels), (test_images, test_labels) = data["train"], data["test"]
    settings = settings_of(config, train_labels, test_labels, processes)
    # Each process keeps its own shard; training shards are equal, as the processes step together.
    train_images, train_labels = (
        distributed.shard(tensor, processes, same_length=True)
        for tensor in (train_images, train_labels)
    )
    test_images, test_labels = (distributed.shard(t, processes) for t in (test_images, test_labels))

    # channels-last memory suits CPU (oneDNN) and GPU (tensor cores) convolutions best.
    model = Net(width=config.width).to(device, memory_format=torch.channels_last)
    # Steps go through the wrapper, which averages gradients over processes; `model` itself
    # is what gets saved, so checkpoints and model.pt do not depend on the process count.
    stepper = distributed.wrap(model, processes)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_labels) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    autocast, scaler = mixed_precision(device, config.amp)
    shuffle = torch.Generator().manual_seed(config.seed)  # the order of training images
    # What a checkpoint saves and restores, besides the random states and the run's progress.
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    parameters = sum(p.numel() for p in model.parameters())
    each = f" processes={processes.world_size}, each with" if processes.active else ""
    say(
        f"device={device.type}{each} train_images={len(train_labels)} "
        f"test_images={len(test_labels)} parameters={parameters} steps_per_epoch={steps_per_epoch}"
    )

    run = {"epoch": 0, "step": 0, "order": None, "losses": None, "history": [], "confusion": None}
    saved, aside = None, None
    if config.resume and main:
        saved, aside = checkpoint.load_matching(config.checkpoint_dir, settings)
    saved = distributed.from_main(saved, processes)
    if aside is not None:
        changed = sorted(k for k in settings if aside["settings"].get(k) != settings[k])
        say(
            f"set aside the checkpoint in {config.checkpoint_dir} (other {', '.join(changed)}) as "
            f"{aside['kept_as'].name}: a run with its settings resumes from it"
        )
    if saved is not None:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        checkpoint.restore_rng_states(saved["rng"], shuffle)
        run = saved["run"]
        if run["epoch"] < config.epochs:
            position = f"epoch {run['epoch'] + 1}, step {run['step']}"
            say(f"resuming from {config.checkpoint_dir}: {position}")
        else:
            say(f"{config.checkpoint_dir} holds this finished run; writing its results again")

    def state():
        saved_parts = {name: part.state_dict() for name, part in parts.items()}
        return {
            "settings": settings,
            "rng": checkpoint.rng_states(shuffle),
            "run": run,
            **saved_parts,
        }

    last_save = [time.monotonic()]

    def between_steps(step=0):
        """(stop, save): a signal asks to stop; a time-based checkpoint is due (rank 0's clock).
        Every process learns both at the same step, as they step together."""
        if processes.active and step % STOP_CHECK_STEPS:
            return False, False
        interval = config.checkpoint_interval
        due = main and interval > 0 and time.monotonic() - last_save[0] >= interval
        return distributed.any_set([stop.received, due], processes, device)

    def save_checkpoint():
        if main:
            checkpoint.save(config.checkpoint_dir, state())
        last_save[0] = time.monotonic()

    with checkpoint.StopSignals() as stop, open_tracker(config, processes) as tracker:
        if tracker:
            run["tracking_run_key"] = tracker.start(run.get("tracking_run_key"))
        while run["epoch"] < config.epochs and not between_steps()[0]:
            epoch = run["epoch"] + 1
            if run["order"] is None:
                run["order"] = torch.randperm(len(train_labels), generator=shuffle)
            order = run["order"].to(train_images.device)
            model.train()
            # Each step's loss (times its batch size) in its own slot, summed only at the end of
            # the epoch: an interrupted, resumed epoch adds up exactly the same numbers in the
            # same order. A checkpoint holds the slots summed over processes: rank 0 takes them.
            losses = torch.zeros(steps_per_epoch, device=device)
            if run["losses"] is not None and main:
                losses.copy_(run["losses"])
            started = last_report = time.monotonic()
            first, stopped = run["step"], False
            for step, (images, labels) in enumerate(
                batches(train_images, train_labels, config.batch_size, device, order, first),
                start=first + 1,
            ):
                with autocast():
                    loss = F.cross_entropy(stepper(images), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses[step - 1] = loss.detach() * len(labels)
                now = time.monotonic()
                if config.log_interval and now - last_report >= config.log_interval:
                    rate = (step - first) * config.batch_size / (now - started)
                    say(
                        f"epoch {epoch} step {step}/{steps_per_epoch}: "
                        f"loss {loss.item():.4f}, {rate:.0f} images/s"
                    )
                    last_report = now
                stopped, due = between_steps(step)
                if stopped or due:  # a checkpoint here, mid-epoch: the loss slots so far
                    summed = distributed.total(losses.clone(), processes).cpu()
                    run.update(step=step, losses=summed)
                if stopped:
                    break
                if due:
                    save_checkpoint()
                    say(f"epoch {epoch} step {step}/{steps_per_epoch}: checkpoint saved")
            if stopped:
                break

            distributed.same_buffers(model, processes)
            test_loss, accuracy, run["confusion"] = evaluate(
                model, test_images, test_labels, device, autocast, processes
            )
            seen = len(train_labels) * processes.world_size
            row = {
                "epoch": epoch,
                "train_loss": distributed.total(losses, processes).sum().item() / seen,
                "test_loss": test_loss,
                "test_accuracy": accuracy,
            }
            if not all(math.isfinite(row[name]) for name in ("train_loss", "test_loss")):
                raise Diverged(epoch, row, config)  # the last checkpoint stays the last good one
            run["history"].append(row)
            run.update(epoch=epoch, step=0, order=None, losses=None)
            if not main:
                continue
            print(
                f"epoch={epoch} train_loss={row['train_loss']:.4f} "
                f"test_loss={test_loss:.4f} test_accuracy={accuracy:.4f}"
            )
            write_metrics(run["history"], config.output_data_dir / "metrics.csv")
            save_checkpoint()
            if tracker:
                tracker.log_epoch(row)
        if run["epoch"] < config.epochs:  # stopped by a signal
            if main:
                checkpoint.save(config.checkpoint_dir, state())
            # Another process may have got the signal: stop as it would.
            raise checkpoint.Interrupted(stop.received or signal.SIGTERM, config.checkpoint_dir)
        if not main:
            return run["history"]

        weights = {name: tensor.cpu().contiguous() for name, tensor in model.state_dict().items()}
        checkpoint.write_atomically(config.model_dir / "model.pt", checkpoint.save_tensors, weights)
        write_metrics(run["history"], config.output_data_dir / "metrics.csv")
        output = config.output_data_dir
        figures = [
            plot_curves(run["history"], output / "curves.png"),
            plot_confusion_matrix(run["confusion"], output / "confusion_matrix.png"),
        ]
        if tracker:
            tracker.finish(figures, config.model_dir / "model.pt")
    print(f"saved {config.model_dir / 'model.pt'}; metrics and plots in {output}")
    return run["history"]


def main(argv=None):
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # lines reach the job's log as they happen
    config = parse_config(argv)
    try:
        train(config)
    except (DatasetError, Diverged) as error:
        sys.exit(f"error: {error}")
    except checkpoint.Interrupted as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:  # before training began (e.g. loading data): nothing to save
        print("interrupted before training started; nothing written", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except OSError as error:  # a full disk, a folder that cannot be written
        where = f" writing {error.filename}" if error.filename else ""
        sys.exit(f"error: {error.strerror or error}{where}; nothing half-written was left")


if __name__ == "__main__":
    main()
