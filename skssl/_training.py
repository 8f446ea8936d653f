"""The one training loop every estimator shares.

:class:`TrainingLoop` is mixed into :class:`skssl.base.BaseSSL`. Its methods
all start with ``_loop_``, and a method class may not define a name with that
prefix (``BaseSSL.__init_subclass__`` refuses it), so a method's own helper can
never shadow part of the loop by accident. Methods take part through the hooks
documented in :mod:`skssl.base`.

The loop reads batches from a source (:mod:`skssl._sources`): slices of one
tensor for arrays in memory, a DataLoader for everything else. One seeded
permutation orders every epoch whatever the source, so a memmap trains on
exactly the batches the same array in memory would.
"""

import datetime
import math
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from . import _checkpoint, _distributed


@contextmanager
def _sigint_sets_flag(estimator):
    """Turn Ctrl-C into a flag the loop checks after each batch.

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread
    (where signal handlers cannot be installed) Ctrl-C arrives as a
    KeyboardInterrupt, which the loop also treats as a stop request.
    """
    estimator._interrupted = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if estimator._interrupted:
            raise KeyboardInterrupt
        estimator._interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _warmup_cosine(total_steps):
    warmup = max(1, total_steps // 10)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _now():
    """The clock ``max_time`` is measured on (a function, so tests can replace it)."""
    return time.monotonic()


def _all_finite(state):
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


class _LossModule(nn.Module):
    """The networks as one module whose forward is the method's loss, for DDP to wrap.

    DDP synchronises gradients of what runs inside its forward; methods call
    ``networks_`` directly in ``_loss``, so the loss itself is that forward.
    """

    def __init__(self, estimator):
        super().__init__()
        self.networks = estimator.networks_
        self.__dict__["estimator"] = estimator  # not a submodule

    def forward(self, x):
        return self.estimator._loss(x)


class TrainingLoop:
    """Optimiser, schedule, autocast, checkpoints, interrupts and OOM back-off."""

    # A class that learns nothing (the random-init baseline) sets this to False.
    _trains = True
    # Under torchrun, DDP must look for parameters that get no gradient in a step (a graph
    # traversal per step): only methods whose loss leaves some trainable parameters out set this.
    # Measured: no method's loss does, in any of its settings (every trainable parameter had a
    # gradient after each step of a fit of each method).
    _find_unused_parameters = False

    def _loop_train(self, source, device, checkpoint, resume):
        nets = self.networks_.to(device)
        if device.type == "cuda":
            nets.to(memory_format=torch.channels_last)
            source = self._loop_to_device(source, device)
        batch_size = min(self.batch_size, len(source))
        if self._world > 1:
            # batch_size is the global batch; every process takes an equal slice.
            if batch_size < self._world:
                raise ValueError(f"batch_size={self.batch_size} is smaller than the {self._world} torchrun processes.")
            batch_size -= batch_size % self._world
            if self.sync_batchnorm:
                _distributed.sync_batchnorm(nets, device)
            self._ddp = nn.parallel.DistributedDataParallel(
                _LossModule(self), device_ids=[device] if device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=self._find_unused_parameters)
        state = None
        if resume and checkpoint and os.path.exists(checkpoint):
            state = _checkpoint.load(checkpoint, self, self._data_key)
        budget = self.max_time.total_seconds() if isinstance(self.max_time, datetime.timedelta) else self.max_time
        self._deadline = None if budget is None else _now() + float(budget)
        failed = True
        try:
            with _sigint_sets_flag(self):
                while True:
                    try:
                        self._loop_epochs(source, device, batch_size, checkpoint, state)
                        failed = False
                        return
                    except torch.OutOfMemoryError as exc:
                        # Only the very first batch is retried: nothing has been learned yet. Under
                        # torchrun the other processes are already in the step's collectives: no retry.
                        if self._step > 0 or batch_size <= 2 or self._world > 1:
                            raise MemoryError(
                                f"{type(self).__name__} ran out of {device} memory at batch_size={batch_size}. "
                                "Use a smaller backbone, smaller images (image_size) or precision='bf16'."
                            ) from exc
                        batch_size //= 2
                        warnings.warn(f"Out of {device} memory at the first batch; retrying with batch_size={batch_size}.", stacklevel=4)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
        finally:
            nets.eval()
            if self._world > 1:
                self.__dict__.pop("_ddp", None)
                if not failed:
                    # Every process ends with rank 0's state: identical weights, and the BatchNorm
                    # running statistics rank 0 tracked (as DDP's buffer broadcast would). Never while
                    # an exception propagates: the other processes may be waiting in the step's
                    # collectives, and a failing process must end the job, not wait with them.
                    _distributed.broadcast_state(nets)
                _distributed.plain_batchnorm(nets)

    def _loop_time_is_up(self):
        """True once ``max_time`` has passed since training started (False without a budget)."""
        deadline = getattr(self, "_deadline", None)
        return deadline is not None and _now() > deadline

    @staticmethod
    def _loop_to_device(source, device):
        """Keep in-memory images on the GPU (as uint8 when they are) when they take < 1/4 of its free memory."""
        from ._sources import TensorSource

        if isinstance(source, TensorSource) and source.nbytes() < 0.25 * torch.cuda.mem_get_info(device)[0]:
            return TensorSource(source.images.to(device))
        return source

    def _loop_epochs(self, source, device, batch_size, checkpoint, state):
        from tqdm.auto import tqdm

        nets, n = self.networks_, len(source)
        steps = n // batch_size
        optimizer = self._make_optimizer([p for p in nets.parameters() if p.requires_grad])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps * self.max_epochs))
        self._total_steps, self._step, self._batch_size = steps * self.max_epochs, 0, batch_size
        first_epoch = len(self.history_)
        # Where a checkpoint written mid-epoch (Ctrl-C, max_time) stopped: that epoch's order and progress.
        position = self._loop_restore(state, optimizer, schedule) if state is not None else None
        last_good = None
        pin = device.type == "cuda"
        epochs = tqdm(range(len(self.history_) - first_epoch, self.max_epochs), desc=type(self).__name__,
                      disable=not self.verbose or self._rank != 0, leave=False)
        per_rank = batch_size // self._world
        mine = slice(self._rank * per_rank, (self._rank + 1) * per_rank)
        for epoch in epochs:
            start = time.perf_counter()
            self._epoch_metrics = {}
            if self._world > 1:
                # The hook's eval-mode passes (k-means features, crop boxes, a bank fill) see rank 0's
                # BatchNorm statistics on every process, so what they decide agrees.
                _distributed.broadcast_buffers(nets)
            self._before_epoch(source, len(self.history_))
            # Every float of the state must be finite, buffers included (BatchNorm's running
            # statistics diverge too); taken after the hook, which may change the state (BEiT's
            # tokenizer, DeepCluster's new head).
            if _all_finite(nets.state_dict()):
                last_good = {k: t.detach().clone() for k, t in nets.state_dict().items()}
            nets.train()
            if position is not None:
                self._order_generator.set_state(position["order_state"])
            order_state = self._order_generator.get_state()
            # One permutation from a generator seeded alike on every process: the ranks' slices
            # of each global batch never overlap, and every image is seen once per epoch.
            order = torch.randperm(n, generator=self._order_generator)
            done = position["batches"] if position is not None else 0
            total = torch.full((), position["loss_total"] if position is not None else 0.0, device=device)
            position = None
            batches = source.batches((order[i * batch_size:(i + 1) * batch_size][mine] for i in range(done, steps)),
                                     self._num_workers, pin)
            stop = None
            try:
                for index, stored in batches:
                    try:
                        self._batch_index = index.to(device)
                        loss, stop = self._loop_step(self._prepare(stored, device), device, optimizer, schedule, last_good, done)
                        total += loss.detach().float()
                        done += 1
                    except KeyboardInterrupt:
                        self._interrupted = True
                        if self._world == 1:
                            stop = "interrupted"
                    if stop:
                        break
            finally:
                getattr(batches, "close", lambda: None)()  # stops DataLoader workers at once
            if self._world > 1:  # the epoch's loss over every process's batches
                total = _distributed.mean_over_ranks(total)
            record = {"epoch": len(self.history_) + 1, "loss": total.item() / max(done, 1), "seconds": time.perf_counter() - start}
            record.update(self._epoch_metrics)
            if stop:
                record.update(stopped=stop, batches=done, **({"interrupted": True} if stop == "interrupted" else {}))
            self.history_.append(record)
            epochs.set_postfix(loss=f"{record['loss']:.4f}")
            if stop:
                if checkpoint:  # what the stopped epoch learned survives: a later fit resumes mid-epoch
                    partial = done < steps
                    self._loop_save(checkpoint, optimizer, schedule, history=self.history_[:-1] if partial else None,
                                    position={"batches": done, "loss_total": total.item(), "order_state": order_state}
                                    if partial else None)
                if stop == "interrupted":
                    warnings.warn(
                        f"{type(self).__name__}.fit interrupted in epoch {record['epoch']} after {done} of {steps} batches; "
                        "the model keeps what it has learned so far.",
                        stacklevel=5,
                    )
                return
            if checkpoint and ((epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.max_epochs):
                self._loop_save(checkpoint, optimizer, schedule)

    def _loop_step(self, x, device, optimizer, schedule, last_good, batch):
        """One optimiser step; returns the loss and why training must stop after it (or None)."""
        with self._autocast(device):
            loss = self._ddp(x) if self._world > 1 else self._loss(x)
        if self._world > 1:
            # One collective per step carries what any process saw: a non-finite loss, Ctrl-C, max_time.
            flags = torch.stack([~torch.isfinite(loss.detach()), torch.tensor(self._interrupted, device=device),
                                 torch.tensor(self._loop_time_is_up(), device=device)]).float()
            flags = _distributed.all_reduce(flags, "max").tolist()
            finite, stop = flags[0] == 0, "interrupted" if flags[1] else "max_time" if flags[2] else None
        else:
            finite, stop = bool(torch.isfinite(loss)), None
        if not finite:
            if last_good is not None:
                self.networks_.load_state_dict(last_good)
            raise FloatingPointError(
                f"{type(self).__name__}: the loss became {loss.item()} at epoch {len(self.history_) + 1}, "
                f"batch {batch + 1} (lr={self.lr}). Try a lower learning rate; "
                + ("the model keeps its last finite weights." if last_good is not None
                   else "no finite weights were recorded before it, so the model is left as it is.")
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        self._step += 1
        self._after_step()
        if self._world == 1:
            stop = "interrupted" if self._interrupted else "max_time" if self._loop_time_is_up() else None
        return loss, stop

    def _loop_save(self, path, optimizer, schedule, history=None, position=None):
        """Rank 0 writes the checkpoint, with every process's augmentation RNG state; all wait for it.

        ``position`` (batches done, their loss, the epoch's order) marks a checkpoint written
        mid-epoch, whose ``history`` then ends with the last complete epoch.
        """
        generators = _distributed.gather_objects(self._generator.get_state().cpu())
        if self._rank != 0:
            _distributed.barrier()
            return
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _checkpoint.atomic_save(path, {
            "class": type(self).__name__,
            "parameter_key": _checkpoint.parameter_key(self),
            "data_key": self._data_key,
            "networks": self.networks_.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": self.history_ if history is None else history,
            "step": self._step,
            "position": position,
            "rng_cpu": torch.get_rng_state(),
            "rng_order": self._order_generator.get_state(),
            "rng_shared": self._shared_generator.get_state() if self._world > 1 else torch.empty(0, dtype=torch.uint8),
            "rng_device": self._generator.get_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self._generator.device.type == "cuda" else torch.empty(0),
            "rng_device_per_rank": generators,
        })
        _distributed.barrier()

    def _loop_restore(self, state, optimizer, schedule):
        """Load a checkpoint into the fit; returns its mid-epoch ``position`` (None at an epoch's end)."""
        try:
            self.networks_.load_state_dict(state["networks"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"The checkpoint of this {type(self).__name__} in checkpoint_dir={self.checkpoint_dir!r} "
                             f"does not match its networks (written by another skssl version?): "
                             f"{str(exc).splitlines()[0]} Delete it to start over.") from None
        schedule.load_state_dict(state["schedule"])
        self.history_ = list(state["history"])
        self._step = state["step"]
        torch.set_rng_state(state["rng_cpu"])
        if "rng_order" in state:
            self._order_generator.set_state(state["rng_order"])
        else:  # written before the order had its own generator
            self._order_generator.manual_seed(self._order_generator.initial_seed() + self._step)
        shared = state.get("rng_shared")
        if self._world > 1 and shared is not None and shared.numel() == self._shared_generator.get_state().numel():
            self._shared_generator.set_state(shared)
        per_rank = state.get("rng_device_per_rank") or []
        saved = per_rank[self._rank] if len(per_rank) == self._world else (state["rng_device"] if self._world == 1 else None)
        if saved is not None and saved.numel() == self._generator.get_state().numel():
            self._generator.set_state(saved)
        else:  # written with another world size or on another device type: a fresh stream per rank
            self._generator.manual_seed(self._generator.initial_seed() + 104729 * self._step)
        if self._generator.device.type == "cuda" and state["rng_cuda"].numel():
            torch.cuda.set_rng_state(state["rng_cuda"])
        return state.get("position")


LOOP_NAMES = frozenset(name for name in vars(TrainingLoop) if name.startswith("_loop_"))
