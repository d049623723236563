"""A run that stops and resumes anywhere: it resumes from a checkpoint of the same settings, saves
one after every epoch, every --checkpoint-interval seconds and when SIGTERM/SIGINT asks it to
stop, prints progress within an epoch, and ends a run whose steps stall (watchdog.py). It also
keeps the weights of the last completed epoch (`epoch_weights`), which a stop leaves as the
run's model. train.py's loops go through it:

    for epoch, order in run.epochs():         # skips the epochs a checkpoint holds
        for batch in run.steps(batches_from):  # from the step it holds
            ...
            run.record(loss, batch_size)
        run.end_epoch(row)

Every process of a data-parallel run makes the same calls; only rank 0 reads and writes files.
"""

import math
import signal
import time

import torch

import checkpoint
import distributed
import watchdog

# With several processes, they agree every this many steps whether a signal asks them to stop.
STOP_CHECK_STEPS = 10


class Diverged(Exception):
    """The loss became NaN or infinite: the weights are garbage and nothing is saved."""

    def __init__(self, epoch, row, config):
        losses = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.endswith("_loss"))
        super().__init__(
            f"training diverged in epoch {epoch} ({losses}); nothing saved from it: lower --lr "
            f"(now {config.lr:g}) or --batch-size, or raise --weight-decay"
        )


class ResumableRun:
    def __init__(self, config, processes, device, settings, stateful, examples, print0):
        """settings: the run's identity (a checkpoint of other settings is left as it is, never
        resumed); stateful: {name: object with state_dict() and load_state_dict()} that a
        checkpoint saves; examples: how many training examples this process has; print0: print,
        on rank 0 only."""
        self.config, self.processes, self.device = config, processes, device
        self.settings, self.stateful, self.print0 = settings, stateful, print0
        self.examples = examples
        self.steps_per_epoch = math.ceil(examples / config.batch_size)
        self.shuffle = torch.Generator().manual_seed(config.seed)  # the order of examples
        self.state = {"epoch": 0, "step": 0, "order": None, "losses": None, "history": []}
        self.losses = None  # this epoch's loss of each step, times its batch size
        # The model's weights at the end of the last completed epoch, on the CPU: a stop
        # mid-epoch still has a model whose metrics the history holds. None before the first.
        self.epoch_weights = None
        self.stop = checkpoint.StopSignals()
        self.first_step_done = False  # said once: the launcher measures start-up up to it
        self.watchdog = watchdog.Watchdog(config.stall_timeout)
        self.last_save = time.monotonic()

    @property
    def history(self):
        return self.state["history"]

    def __enter__(self):
        self.stop.__enter__()
        self.watchdog.__enter__()
        self.resume()
        return self

    def __exit__(self, *exc_info):
        self.watchdog.__exit__(*exc_info)
        self.stop.__exit__(*exc_info)

    def resume(self):
        saved, other = None, None
        config, main = self.config, self.processes.main
        if config.resume and main:
            saved, other = checkpoint.load_matching(config.checkpoint_dir, self.settings)
        saved = distributed.broadcast_from_rank0(saved, self.processes)
        if saved is None and other is not None:
            mine = checkpoint.as_json(self.settings)
            changed = sorted(k for k in {*mine, *other} if other.get(k) != mine.get(k))
            self.print0(
                f"starting afresh: the checkpoint in {config.checkpoint_dir} is of other "
                f"{', '.join(changed)}; it stays, and a run with its settings resumes from it"
            )
        if saved is None:
            return
        for name, part in self.stateful.items():
            part.load_state_dict(saved[name])
        checkpoint.restore_rng_states(saved["rng"], self.shuffle)
        self.state = saved["run"]
        if self.state["epoch"] > 0:  # at an epoch's end the model is that epoch's
            self.epoch_weights = saved["epoch_model"] if self.state["step"] else saved["model"]
        if self.state["epoch"] < config.epochs:
            self.print0(f"resuming from {config.checkpoint_dir}: {self.position()}")
        else:
            self.print0(
                f"{config.checkpoint_dir} holds this finished run; writing its results again"
            )

    def save(self):
        if self.processes.main:
            stateful = {name: part.state_dict() for name, part in self.stateful.items()}
            rng = checkpoint.rng_states(self.shuffle)
            content = {"settings": self.settings, "rng": rng, "run": self.state, **stateful}
            if self.state["step"]:  # mid-epoch: the model has moved on since the epoch's end
                content["epoch_model"] = self.epoch_weights
            checkpoint.save(self.config.checkpoint_dir, content)
        self.last_save = time.monotonic()

    def between_steps(self, step=0):
        """(stop, save): a signal asks to stop; a timed checkpoint is due (rank 0's clock).
        Every process learns both at the same step, as they step together."""
        if self.processes.active and step % STOP_CHECK_STEPS:
            return False, False
        interval = self.config.checkpoint_interval
        due = interval > 0 and time.monotonic() - self.last_save >= interval
        flags = [self.stop.received, due and self.processes.main]
        return distributed.all_reduce_any(flags, self.processes, self.device)

    def epochs(self):
        """Yield (epoch number, order of the training examples) until the run is done; when a
        signal stops it, save a checkpoint and raise checkpoint.Interrupted."""
        while self.state["epoch"] < self.config.epochs and not self.between_steps()[0]:
            if self.state["order"] is None:
                self.state["order"] = torch.randperm(self.examples, generator=self.shuffle)
            # Each step's loss in its own slot, summed only at the end of the epoch: an
            # interrupted, resumed epoch adds up exactly the same numbers in the same order. A
            # checkpoint holds the slots summed over processes: rank 0 takes them back.
            self.losses = torch.zeros(self.steps_per_epoch, device=self.device)
            if self.state["losses"] is not None and self.processes.main:
                self.losses.copy_(self.state["losses"])
            yield self.state["epoch"] + 1, self.state["order"]
        if self.state["epoch"] < self.config.epochs:
            self.interrupt()

    def interrupt(self):
        self.save()
        # Another process may have got the signal: stop as it would.
        received = self.stop.received or signal.SIGTERM
        raise checkpoint.Interrupted(received, self.config.checkpoint_dir, self.position())

    def position(self):
        """Where the run stands, as `resuming from` names it: "epoch 2, step 5"."""
        return f"epoch {self.state['epoch'] + 1}, step {self.state['step']}"

    def steps(self, batches_from):
        """Yield the batches of batches_from(first step), from where the run is; a due timed
        checkpoint is saved between steps; a signal saves one and raises Interrupted."""
        first = self.state["step"]
        started = last_report = time.monotonic()
        epoch = self.state["epoch"] + 1
        for step, batch in enumerate(batches_from(first), start=first + 1):
            self.step = step
            yield batch
            watchdog.progress()
            now = time.monotonic()
            if not self.first_step_done:
                self.first_step_done = True
                loss = self.losses[step - 1].item() / len(batch[0])
                self.print0(
                    f"epoch {epoch} step {step}/{self.steps_per_epoch}: first step done, "
                    f"loss {loss:.4f}"
                )
            elif self.config.log_interval and now - last_report >= self.config.log_interval:
                rate = (step - first) * len(batch[0]) / (now - started)
                loss = self.losses[step - 1].item() / len(batch[0])
                self.print0(
                    f"epoch {epoch} step {step}/{self.steps_per_epoch}: "
                    f"loss {loss:.4f}, {rate:.0f} examples/s"
                )
                last_report = now
            stopped, due = self.between_steps(step)
            if stopped or due:  # a checkpoint here, mid-epoch: the loss slots so far
                summed = distributed.total(self.losses.clone(), self.processes).cpu()
                self.state.update(step=step, losses=summed)
            if stopped:
                self.interrupt()
            if due:
                self.save()
                self.print0(f"epoch {epoch} step {step}/{self.steps_per_epoch}: checkpoint saved")

    def record(self, loss, batch_size):
        """The loss of the step just taken (a mean over its batch)."""
        self.losses[self.step - 1] = loss.detach() * batch_size

    def train_loss(self):
        """This epoch's mean training loss over every process's examples."""
        seen = self.examples * self.processes.world_size
        return distributed.total(self.losses, self.processes).sum().item() / seen

    def end_epoch(self, row):
        """Keep the epoch's metrics (a dict from "epoch" on) and save a checkpoint; a NaN or
        infinite loss raises Diverged instead, and the last checkpoint stays the last good one."""
        if not all(math.isfinite(v) for k, v in row.items() if k.endswith("_loss")):
            raise Diverged(row["epoch"], row, self.config)
        self.history.append(row)
        self.state.update(epoch=row["epoch"], step=0, order=None, losses=None)
        model = self.stateful["model"].state_dict()
        self.epoch_weights = {
            name: tensor.detach().to("cpu", copy=True) for name, tensor in model.items()
        }
        self.save()
