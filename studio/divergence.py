"""Training that diverged says so: a non-finite loss or gradient norm stops the run as
`failed` ("diverged at step N (loss nan)", with the fix), and no non-finite weights are
ever written as a checkpoint or as final/.

Detection reads only what the Trainer already computes and logs (loss and grad_norm at
each log step), plus one finiteness pass over the trainable weights right before a save,
so it costs nothing between log steps.

Opt-in `train.on_divergence: rollback`: restore the last good state, halve the learning
rate and continue, at most `train.max_rollbacks` times, each time a
{"kind": "event", "event": "rollback", ...} record in metrics.jsonl (the loss chart draws
it). The good state is an in-memory copy (host RAM) of the trainable weights and the
optimizer state, not a checkpoint on disk: it needs no save_every setting, no disk
writes, and no re-entry into Trainer.train (whose resume would reload the scheduler with
the old learning rate). Its cost is one device-to-host copy of the trainable weights and
optimizer state per log step and ~3x the trainable weights in host RAM: small for
adapters, a real cost for full fine-tuning of a large model, which is why it is opt-in.

Imported by the worker only (torch and transformers are imported inside functions).
"""
from __future__ import annotations

import copy
import math


class Diverged(RuntimeError):
    """Training produced non-finite values; the message names the step and the fix."""


LOGGED = ("loss", "grad_norm", "eval_loss", "train_loss")


def nonfinite(logs: dict) -> str | None:
    """'loss nan' / 'grad_norm inf' for the first logged value that is not finite."""
    for key in LOGGED:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            return f"{key} {value}"
    return None


def _number(x: float) -> str:
    """A rate as YAML and --set read it back as a number (PyYAML takes '1e+05' for text)."""
    return f"{x:.2g}" if 1e-4 <= abs(x) < 1e4 else f"{x:.1e}"


def message(step: int, what: str, learning_rate: float, rollbacks: int = 0, checkpoint=None) -> str:
    lower = _number(learning_rate / 10)
    text = f"diverged at step {step} ({what})."
    if rollbacks:
        text += f" {rollbacks} rollback(s) halved the learning rate to {learning_rate:.3g} and it still diverged."
    text += (f" Fix: lower train.learning_rate, e.g. to {lower}"
             + (", or set train.on_divergence: rollback (it restores the last good state, halves the learning"
                " rate and continues)." if not rollbacks else ", or raise train.max_rollbacks.")
             + " No model was saved as final/.")
    if checkpoint:
        text += f" The last checkpoint with finite weights is kept: {checkpoint}"
    return text


def first_nonfinite(model, trainable_only: bool = True) -> str | None:
    """The name of the first parameter holding NaN/inf (None when all are finite)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if (p.requires_grad or not trainable_only) and p.numel() and not torch.isfinite(p).all():
                return name
    return None


def _host_copy(obj):
    """A deep copy with every tensor on the CPU (the optimizer aliases tensors it is given
    on its own device, so a snapshot must never be handed over without a fresh copy)."""
    import torch

    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v) for v in obj)
    return copy.deepcopy(obj)


def make_guard(train_spec, log=lambda record: None, last_checkpoint=lambda: None):
    # Over 60 lines on purpose: one TrainerCallback class, defined inside so that importing this module never imports transformers.
    """The TrainerCallback. `log(record)` appends to metrics.jsonl (a no-op on extra
    ranks); `last_checkpoint()` names the newest complete checkpoint for the message.
    Set `.trainer` (studio.methods.common.run_trainer does) so a rollback can also clear
    the Trainer's running loss, which a NaN would otherwise poison for good."""
    from transformers import TrainerCallback

    class DivergenceGuard(TrainerCallback):
        def __init__(self):
            self.rollback = train_spec.on_divergence == "rollback"
            self.max_rollbacks = train_spec.max_rollbacks
            self.rollbacks = 0
            self.trainer = None
            # `verified`: weights that produced finite losses for a whole log window after
            # them; `pending`: the state at the latest finite log, whose next steps are not
            # yet known to be finite (huge-but-finite weights can be one step from NaN)
            self.verified = self.pending = None
            self.loss_total = 0.0
            self.bad_weight = None

        def snapshot(self, step, model, optimizer):
            params = {n: _host_copy(p) for n, p in model.named_parameters() if p.requires_grad}
            return {"step": step, "params": params, "optimizer": _host_copy(optimizer.state_dict())}

        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if self.rollback and model is not None and optimizer is not None:
                self.verified = self.snapshot(state.global_step, model, optimizer)

        def on_log(self, args, state, control, logs=None, model=None, optimizer=None, lr_scheduler=None, **kw):
            what = nonfinite(logs or {}) or (self.bad_weight and f"weight {self.bad_weight} not finite")
            self.bad_weight = None
            if what is None:
                if self.rollback and "loss" in (logs or {}) and model is not None:
                    self.verified = self.pending or self.verified
                    self.pending = self.snapshot(state.global_step, model, optimizer)
                    self.loss_total = getattr(self.trainer, "_total_loss_scalar", 0.0)
                return
            self.diverged(state.global_step, what, model, optimizer, lr_scheduler)

        def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kw):
            # never write non-finite weights as a checkpoint: one pass over the trainable
            # weights before each save (sharded ranks each see only a part: skip there).
            # The save is cancelled and a log forced, so on_log handles it with the loss.
            if control.should_save and model is not None and args.world_size == 1:
                self.bad_weight = first_nonfinite(model)
                if self.bad_weight:
                    control.should_save, control.should_log = False, True

        def diverged(self, step, what, model, optimizer, lr_scheduler):
            if self.rollback and self.rollbacks < self.max_rollbacks and self.verified is not None:
                self.restore(step, what, model, optimizer, lr_scheduler)
                return
            lr = optimizer.param_groups[0]["lr"] if optimizer is not None else train_spec.learning_rate
            lr = _base_lr(lr_scheduler) or lr
            log({"step": step, "kind": "event", "event": "diverged", "reason": what})
            raise Diverged(message(step, what, lr, self.rollbacks, last_checkpoint()))

        def restore(self, step, what, model, optimizer, lr_scheduler):
            import torch

            good = self.verified
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in good["params"]:
                        p.copy_(good["params"][name])
            scheduled = [g["lr"] for g in optimizer.param_groups]  # the rates the next step would use
            optimizer.load_state_dict(_host_copy(good["optimizer"]))  # also brings back the old rates
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr
            new_lr = _halve_learning_rate(optimizer, lr_scheduler)
            self.pending = None  # the state after `verified` led here: not a state to return to
            self.rollbacks += 1
            if self.trainer is not None:  # the running loss holds the NaN: restart its window
                self.trainer._tr_loss.zero_()
                self.trainer._total_loss_scalar = self.loss_total
            log({"step": step, "kind": "event", "event": "rollback", "reason": what, "learning_rate": new_lr,
                 "restored_step": good["step"], "rollback": self.rollbacks})
            print(f"Diverged at step {step} ({what}): rolled back to the state of step {good['step']}, "
                  f"learning rate halved to {new_lr:.3g} (rollback {self.rollbacks} of {self.max_rollbacks})",
                  flush=True)

    return DivergenceGuard()


def _base_lr(lr_scheduler) -> float | None:
    sched = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps it
    base = getattr(sched, "base_lrs", None)
    return float(base[0]) if base else None


def _halve_learning_rate(optimizer, lr_scheduler) -> float:
    """Halve the schedule's base (so every later step's rate is half of what it would
    have been) and the current rate; returns the new peak learning rate."""
    sched = getattr(lr_scheduler, "scheduler", lr_scheduler)
    if sched is not None and getattr(sched, "base_lrs", None):
        sched.base_lrs = [b * 0.5 for b in sched.base_lrs]
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = group["lr"] * 0.5
        if "initial_lr" in group and sched is not None and getattr(sched, "base_lrs", None):
            group["initial_lr"] = sched.base_lrs[min(i, len(sched.base_lrs) - 1)]  # not the snapshot's
    if sched is not None and hasattr(sched, "_last_lr"):
        sched._last_lr = [g["lr"] for g in optimizer.param_groups]
    return _base_lr(lr_scheduler) or optimizer.param_groups[0]["lr"]
