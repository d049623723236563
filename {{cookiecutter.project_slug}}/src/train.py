#!/usr/bin/env python
"""Train the model of src/model.py on the data of src/data.py, on this machine or as a SageMaker
training job: same file, same options.

    python src/train.py --epochs 2        # dataset/ -> result/model/, result/output/
    torchrun --standalone --nproc_per_node=2 src/train.py   # data-parallel, 2 processes

In a job, SageMaker passes the hyperparameters as `--key value` arguments and the folders
through SM_* variables (see options.py). Every epoch prints one metric line (src/metrics.py),
which the job's metric definitions parse:  epoch=1 train_loss=0.2345 val_loss=0.0567 ...
"""

import contextlib
import csv
import functools
import hashlib
import math
import signal
import sys
from pathlib import Path

from options import RUN_CONTROLS, build_parser

if __name__ == "__main__":  # --help or a mistyped option: answered now, not after torch loads
    build_parser().parse_args()

import torch

import checkpoint
import cross_validation
import data
import distributed
import hardware
import metrics
import model as model_code
import saved_model
import splits
import watchdog
from plots import plot_confusion_matrix, plot_curves
from resumable import Diverged, ResumableRun


def train(config):
    """Train as `config` (build_parser's namespace) says; return the per-epoch metric rows.

    Resumes from the checkpoint in config.checkpoint_dir when it has the same settings, and on
    SIGTERM/SIGINT saves one, leaves the last completed epoch's model in config.model_dir and
    raises checkpoint.Interrupted (resumable.py). Started by torchrun, it trains data-parallel
    (distributed.py).
    """
    processes = distributed.setup()
    try:
        if not config.folds:
            return train_processes(config, processes)
        for fold_config in cross_validation.fold_configs(config):  # --folds: one after another
            if processes.main:
                print(f"fold {fold_config.fold} of {config.folds}")
            history = train_processes(fold_config, processes)
        if processes.main and (cv_line := cross_validation.assemble(config)):
            print(cv_line)
        return history
    finally:
        distributed.cleanup(processes)


def train_processes(config, processes):
    print0 = print if processes.main else lambda *text: None  # only rank 0 prints and writes
    device = hardware.pick_device(processes)
    hardware.use_free_cores()
    hardware.make_reproducible(config.seed, config.deterministic)
    dataset = load_dataset(config, device, processes)
    workers = hardware.dataloader_workers(config.num_workers)
    train_batches = splits.Batches(dataset.train, config.batch_size, device, workers, seeded=True)
    # Evaluation keeps no activations for a backward pass: twice the batch fits as well.
    eval_batches = functools.partial(
        splits.Batches, batch_size=2 * config.batch_size, device=device, workers=workers
    )
    val_batches = eval_batches(dataset.val)

    # -- the model, its optimizer and the learning-rate schedule
    model = model_code.build(dataset.info, config).to(device)
    # Steps go through ddp_model, which averages gradients over processes; `model` itself is
    # what gets saved, so checkpoints and model.pt do not depend on the process count.
    #% if cookiecutter.task == "images"
    # A frozen backbone takes no part in the first epochs' backward passes.
    ddp_model = distributed.wrap(model, processes, find_unused_parameters=config.freeze_epochs > 0)
    # The backbone learns at --backbone-lr-scale times the head's rate (model.py's groups).
    groups = model_code.param_groups(model, config)
    #% else
    ddp_model = distributed.wrap(model, processes)
    groups = [{"params": model.parameters(), "lr": config.lr}]
    #% endif
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(dataset.train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in groups],
        total_steps=config.epochs * steps_per_epoch,
    )
    autocast, scaler = hardware.mixed_precision(device, config.amp)
    print0(setup_line(dataset, model, processes, device, steps_per_epoch, workers))

    # -- what a checkpoint saves and restores, besides the random states and the progress
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    settings = settings_of(config, dataset, processes)
    run = ResumableRun(config, processes, device, settings, stateful, len(dataset.train), print0)

    kept_on_stop = model_kept_on_stop(config, dataset, run, processes)
    with run, kept_on_stop, open_tracker(config, processes, run.state) as tracker:
        for epoch, order in run.epochs():
            # -- one pass over the training examples, in the epoch's order
            #% if cookiecutter.task == "images"
            model.frozen = epoch <= config.freeze_epochs  # --freeze-epochs: the head alone
            #% endif
            model.train()
            # Each example's augmentation draws from its own seed (splits.Seeded).
            epoch_batches = functools.partial(train_batches, order, seed=hash((config.seed, epoch)))
            for inputs, targets in run.steps(epoch_batches):
                with autocast():
                    loss = metrics.loss(ddp_model(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # the scaler: float16 gradients stay in range
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                run.record(loss, len(targets))

            # -- evaluate on the validation part; keep the epoch's metrics and a checkpoint
            distributed.same_buffers(model, processes)  # rank 0's batch-norm statistics
            outputs, targets = predict(model, val_batches, autocast, processes)
            row = {"epoch": epoch, "train_loss": run.train_loss()}
            run.end_epoch(row | metrics.evaluate(outputs, targets, "val"))
            print0(metrics.line(run.history[-1]))
            if processes.main:
                write_metrics(run.history, config.output_data_dir / "metrics.csv")
                if tracker:
                    tracker.log_epoch(run.history[-1])
        evaluation = {"val": val_batches, "test": None, "autocast": autocast}
        if dataset.test is not None and dataset.test.targets is not None:  # a test set to score
            evaluation["test"] = eval_batches(dataset.test)
        evaluate_and_save(config, dataset, model, run.history, evaluation, processes, tracker)
    return run.history


def load_dataset(config, device, processes):
    """data.py's dataset, cut to --train-size/--test-size, this process's shard of it on `device`.
    Training shards are equal, as the processes take their steps together."""
    validation = splits.Fold(config.folds, config.fold) if config.folds else config.val_fraction
    dataset = data.load(config.data_dir, validation, config.seed, options=config)
    dataset.train = dataset.train.take(slice(config.train_size or None))
    if dataset.test is not None:
        dataset.test = dataset.test.take(slice(config.test_size or None))
    dataset.identity = splits.identity(dataset)  # before sharding: the same in every process
    for name in ("train", "val", "test"):
        split = getattr(dataset, name)
        if split is not None:
            shard = distributed.shard(split, processes, same_length=name == "train")
            setattr(dataset, name, splits.place(shard, device))
    return dataset


@contextlib.contextmanager
def model_kept_on_stop(config, dataset, run, processes):
    """A stop (checkpoint.Interrupted) leaves model.pt of the last completed epoch in the model
    folder, which a job uploads as model.tar.gz whatever its outcome."""
    try:
        yield
    except checkpoint.Interrupted:
        if processes.main and run.epoch_weights is not None:
            epochs = run.state["epoch"]
            options = computing_options(config)
            saved_model.save(config.model_dir, run.epoch_weights, dataset.info, options, epochs)
            print(f"kept the model of epoch {epochs} (the last completed) in {config.model_dir}")
        raise


def computing_options(config):
    """Every option but the run controls: what the run computes with (saved in model.json)."""
    return {name: value for name, value in vars(config).items() if name not in RUN_CONTROLS}


def settings_of(config, dataset, processes):
    """The run's identity: the computing options, the data, the code that gives the weights their
    meaning and the process count."""
    settings = {**computing_options(config), "data": dataset.identity, "code": code_identity()}
    return {**settings, "processes": processes.world_size} if processes.active else settings


def code_identity():
    """A digest of the files that say what the weights compute: a relaunch after a change to the
    network, the data's reading or the loss starts afresh (the old checkpoint stays)
    instead of resuming weights trained for other code."""
    digest = hashlib.sha256()
    for module in (model_code, data, metrics):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def setup_line(dataset, model, processes, device, steps_per_epoch, workers):
    each = f" processes={processes.world_size}, each with" if processes.active else ""
    sizes = " ".join(
        f"{name}_examples={len(getattr(dataset, name))}"
        for name in ("train", "val", "test")
        if getattr(dataset, name) is not None
    )
    parameters = sum(p.numel() for p in model.parameters())
    sizes += f" parameters={parameters} steps_per_epoch={steps_per_epoch}"
    threads = f" threads={torch.get_num_threads()}" if device.type == "cpu" else ""
    if not isinstance(dataset.train, splits.Split):  # read from files, by a DataLoader
        sizes += f" dataloader_workers={workers}"
    return f"device={device.type}{threads}{each} {sizes}"


@torch.no_grad()
def predict(model, batches, autocast, processes):
    """(outputs, targets) of the model on a split's Batches, gathered from every process's
    shard."""
    model.eval()
    outputs = []
    for inputs, _ in batches():
        with autocast():
            outputs.append(model(inputs).float())
        watchdog.progress()
    targets = batches.split.targets
    targets = targets if targets is None else targets.to(batches.device)
    gathered = distributed.gather(torch.cat(outputs), processes)
    return gathered, targets if targets is None else distributed.gather(targets, processes)


def evaluate_and_save(config, dataset, model, history, evaluation, processes, tracker):
    """After the last epoch: the test set's metrics when it has labels, then (rank 0) model.pt
    with model.json, metrics.csv and the plots. evaluation: the val and test Batches and the
    autocast to predict them with."""
    autocast = evaluation["autocast"]
    val = predict(model, evaluation["val"], autocast, processes)
    if config.folds:  # the examples' ids, in the order of `val`'s outputs
        val_ids = distributed.gather_objects(dataset.val.ids, processes)
    test = None
    if evaluation["test"] is not None:
        test = metrics.evaluate(*predict(model, evaluation["test"], autocast, processes), "test")
    if not processes.main:
        return
    options = computing_options(config)
    weights = model.state_dict()
    files = saved_model.save(config.model_dir, weights, dataset.info, options, len(history))
    output = config.output_data_dir
    write_metrics(history, output / "metrics.csv")
    figures = [plot_curves(history, output / "curves.png")]
    if "classes" in dataset.info:
        matrix = metrics.confusion(*val, len(dataset.info["classes"]))
        figures.append(
            plot_confusion_matrix(matrix, dataset.info["classes"], output / "confusion_matrix.png")
        )
    if config.folds:  # this fold's out-of-fold predictions
        oof = output / "oof.csv"
        cross_validation.write_out_of_fold(oof, config.fold, val_ids, *val, dataset.info)
    if test is not None:
        print(metrics.line(test))
        checkpoint.write_atomically(output / "test_metrics.json", checkpoint.write_json, test)
    if tracker:
        tracker.log_results(figures, files, test)
    print(f"saved {files[0]} and {files[1].name}; metrics and plots in {output}")


def write_metrics(history, path):
    def write(rows, partial):
        with open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    checkpoint.write_atomically(path, write, history)


def open_tracker(config, processes, state):
    """src/tracking.py's tracker (started, or continuing the run the checkpoint names) when the
    project has it and --tracking is on, else a null context."""
    if not getattr(config, "tracking", False) or not processes.main:
        return contextlib.nullcontext()
    import tracking  # here, not at the top: the tracking library takes seconds to import

    return tracking.Tracker(config, state)


def main(argv=None):
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # lines reach the job's log as they happen
    config = build_parser().parse_args(argv)
    try:
        train(config)
    except (data.DatasetError, Diverged) as error:
        # From a DataLoader worker, the message holds the worker's traceback: its last line
        # is the error's own.
        fail(str(error).splitlines()[-1].removeprefix("data.DatasetError: "))
    except checkpoint.Interrupted as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:  # before training began (e.g. loading data): nothing to save
        print("interrupted before training started; nothing written", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except OSError as error:  # a full disk, a folder that cannot be written
        where = f" writing {error.filename}" if error.filename else ""
        fail(f"{error.strerror or error}{where}; nothing half-written was left")


def fail(message):
    """End with one line on stderr; in a job it is also the failure file, which SageMaker shows
    as the job's FailureReason (instead of the driver's traceback of a non-zero exit)."""
    watchdog.write_failure(message)
    sys.exit(f"error: {message}")


if __name__ == "__main__":
    distributed.exit_after(main)
