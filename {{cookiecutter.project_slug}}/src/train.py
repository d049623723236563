#!/usr/bin/env python
"""Train the MNIST CNN, on this machine or as a SageMaker training job: same file, same options.

    python src/train.py --epochs 2        # dataset/ -> result/model/model.pt, result/output/

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
import sys
import time

import torch
import torch.nn.functional as F

import checkpoint
from data import DatasetError, batches, load_mnist
from model import Net
from options import build_parser
from plots import plot_confusion_matrix, plot_curves

METRICS = ["epoch", "train_loss", "test_loss", "test_accuracy"]
# What a checkpoint must share with this run to be resumed (paths and switches may differ).
SETTINGS = ["epochs", "batch_size", "lr", "weight_decay", "width", "seed", "train_size"]


def parse_config(argv=None):
    return build_parser().parse_args(argv)


def pick_device():
    if torch.cuda.is_available():
        return torch.device("cuda")
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


def settings_of(config, train_labels, test_labels):
    """The run's identity: hyperparameters and the data (sizes, digest of the labels)."""
    digest = hashlib.sha1(train_labels.cpu().numpy().tobytes()).hexdigest()[:12]
    data = f"{len(train_labels)} train / {len(test_labels)} test, labels {digest}"
    return {**{name: getattr(config, name) for name in SETTINGS}, "data": data}


@torch.no_grad()
def evaluate(model, images, labels, device, autocast):
    """(mean loss, accuracy in 0..1, confusion matrix [true][predicted]) on a split."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    for batch_images, batch_labels in batches(images, labels, 500, device):
        with autocast():
            logits = model(batch_images)
        loss_sum += F.cross_entropy(logits.float(), batch_labels, reduction="sum")
        predictions.append(logits.argmax(dim=1))
    predicted, true = torch.cat(predictions).cpu(), labels.cpu()
    confusion = torch.bincount(true * 10 + predicted, minlength=100).reshape(10, 10)
    accuracy = (predicted == true).double().mean().item()
    return loss_sum.item() / len(labels), accuracy, confusion.tolist()


def write_metrics(history, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(history)


def open_tracker(config):
    """src/tracking.py's tracker when the project has it and --tracking is on, else None."""
    if not getattr(config, "tracking", False):
        return contextlib.nullcontext()
    import tracking  # here, not at the top: the tracking library takes seconds to import

    return tracking.Tracker(config)


def train(config):
    """Train as `config` (parse_config's namespace) says; return the per-epoch metric rows.

    Resumes from the checkpoint in config.checkpoint_dir when it has the same settings,
    saves one after every epoch, and on SIGTERM/SIGINT saves one and raises
    checkpoint.Interrupted.
    """
    device = pick_device()
    make_reproducible(config.seed, config.deterministic)
    data = load_mnist(config.data_dir, device, config.train_size or None, config.test_size or None)
    (train_images, train_labels), (test_images, test_labels) = data["train"], data["test"]
    settings = settings_of(config, train_labels, test_labels)

    # channels-last memory suits CPU (oneDNN) and GPU (tensor cores) convolutions best.
    model = Net(width=config.width).to(device, memory_format=torch.channels_last)
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
    print(
        f"device={device.type} train_images={len(train_labels)} test_images={len(test_labels)} "
        f"parameters={parameters} steps_per_epoch={steps_per_epoch}"
    )

    run = {"epoch": 0, "step": 0, "order": None, "loss_sum": 0.0, "history": [], "confusion": None}
    saved = checkpoint.load(config.checkpoint_dir) if config.resume else None
    if saved is not None and saved["settings"] == settings:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        checkpoint.restore_rng_states(saved["rng"], shuffle)
        run = saved["run"]
        if run["epoch"] < config.epochs:
            position = f"epoch {run['epoch'] + 1}, step {run['step']}"
            print(f"resuming from {config.checkpoint_dir}: {position}")
        else:
            print(f"{config.checkpoint_dir} holds this finished run; writing its results again")
    elif saved is not None:
        changed = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        print(f"not resuming {config.checkpoint_dir}: other {', '.join(changed)}; starting afresh")

    def state():
        saved_parts = {name: part.state_dict() for name, part in parts.items()}
        return {
            "settings": settings,
            "rng": checkpoint.rng_states(shuffle),
            "run": run,
            **saved_parts,
        }

    with checkpoint.StopSignals() as stop, open_tracker(config) as tracker:
        if tracker:
            run["tracking_run_key"] = tracker.start(run.get("tracking_run_key"))
        while run["epoch"] < config.epochs and not stop.received:
            epoch = run["epoch"] + 1
            if run["order"] is None:
                run["order"] = torch.randperm(len(train_labels), generator=shuffle)
            order = run["order"].to(train_images.device)
            model.train()
            loss_sum = torch.tensor(run["loss_sum"], device=device)
            started = last_report = time.monotonic()
            first = run["step"]
            for step, (images, labels) in enumerate(
                batches(train_images, train_labels, config.batch_size, device, order, first),
                start=first + 1,
            ):
                with autocast():
                    loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach() * len(labels)
                now = time.monotonic()
                if config.log_interval and now - last_report >= config.log_interval:
                    rate = (step - first) * config.batch_size / (now - started)
                    print(
                        f"epoch {epoch} step {step}/{steps_per_epoch}: "
                        f"loss {loss.item():.4f}, {rate:.0f} images/s"
                    )
                    last_report = now
                if stop.received:
                    run.update(step=step, loss_sum=loss_sum.item())
                    break
            if stop.received:
                break

            test_loss, accuracy, run["confusion"] = evaluate(
                model, test_images, test_labels, device, autocast
            )
            row = {
                "epoch": epoch,
                "train_loss": loss_sum.item() / len(train_labels),
                "test_loss": test_loss,
                "test_accuracy": accuracy,
            }
            run["history"].append(row)
            run.update(epoch=epoch, step=0, order=None, loss_sum=0.0)
            print(
                f"epoch={epoch} train_loss={row['train_loss']:.4f} "
                f"test_loss={test_loss:.4f} test_accuracy={accuracy:.4f}"
            )
            write_metrics(run["history"], config.output_data_dir / "metrics.csv")
            checkpoint.save(config.checkpoint_dir, state())
            if tracker:
                tracker.log_epoch(row)
        if run["epoch"] < config.epochs:  # stopped by a signal
            checkpoint.save(config.checkpoint_dir, state())
            raise checkpoint.Interrupted(stop.received, config.checkpoint_dir)

        config.model_dir.mkdir(parents=True, exist_ok=True)
        weights = {name: tensor.cpu().contiguous() for name, tensor in model.state_dict().items()}
        torch.save(weights, config.model_dir / "model.pt")
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
    except DatasetError as error:
        sys.exit(f"error: {error}")
    except checkpoint.Interrupted as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(stopped.exit_code)


if __name__ == "__main__":
    main()
