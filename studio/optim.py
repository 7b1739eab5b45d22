"""The optimizers transformers does not name: Muon (torch's own, paired with AdamW) and
Sophia (written here: no maintained package exists; `sophia-opt`/`SophiaG` on PyPI are
unmaintained copies of the paper's script).

Both are handed to the Trainer as *factories* (transformers calls `factory()(model,
**kwargs)`), because each needs the model itself: Muon to tell hidden matrices from
embeddings and the head, Sophia to re-run a forward pass for its Hessian estimate.
Imported only by the worker (torch at module level).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

# Muon's paper/reference settings; the studio's UI exposes only lr and weight decay.
MUON_MOMENTUM = 0.95
SOPHIA_BETAS = (0.965, 0.99)
SOPHIA_RHO = 0.04
SOPHIA_HESSIAN_EVERY = 10


def optimizer_cls_and_kwargs(name: str, train_spec, method_spec=None) -> tuple[object, dict]:
    """(factory, kwargs) for Trainer(optimizer_cls_and_kwargs=...)."""
    kwargs = {"lr": train_spec.learning_rate, "weight_decay": train_spec.weight_decay}
    ratio = getattr(method_spec, "loraplus_ratio", 0) if method_spec is not None else 0
    if ratio:
        if name not in LORAPLUS_BASE:
            raise ValueError(f"method.loraplus_ratio: LoRA+ builds on {' or '.join(LORAPLUS_BASE)}; "
                             f"set train.optimizer to one of them (not {name}) or loraplus_ratio: 0")
        return functools.partial(LoraPlusFactory, name, ratio), kwargs
    if name == "muon":
        return MuonFactory, kwargs
    if name == "sophia":
        return SophiaFactory, kwargs
    raise ValueError(f"train.optimizer: '{name}' is not built here; choose muon or sophia, "
                     "or one transformers names (adamw, adamw_8bit, adafactor, lion)")


LORAPLUS_BASE = ("adamw", "adamw_8bit")


class LoraPlusFactory:
    """LoRA+ (Hayou et al. 2024) through peft's create_loraplus_optimizer: the B matrices
    train at ratio x the learning rate of A (and of everything else), as one optimizer."""

    def __init__(self, base: str, ratio: float):
        self.base, self.ratio = base, ratio

    def __call__(self, model: nn.Module, lr: float, **kwargs) -> torch.optim.Optimizer:
        from peft.optimizers import create_loraplus_optimizer

        if self.base == "adamw_8bit":
            import bitsandbytes as bnb

            cls = bnb.optim.AdamW8bit
        else:
            cls = torch.optim.AdamW
        return create_loraplus_optimizer(model, cls, lr=lr, loraplus_lr_ratio=self.ratio, **kwargs)


def _embedding_ids(model: nn.Module) -> set[int]:
    ids = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError):
            module = None
        if module is not None and getattr(module, "weight", None) is not None:
            ids.add(id(module.weight))
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            ids.add(id(module.weight))
    return ids


def split_for_muon(model: nn.Module) -> tuple[list, list]:
    """(hidden 2-D matrices for Muon, everything else for AdamW). Muon orthogonalises a
    matrix's update, which suits the linear maps inside blocks; embeddings and the output
    head are lookups/classifiers where that makes no sense (Keller Jordan's and
    Moonshot's recipes both give them to AdamW), and torch's Muon rejects non-2-D tensors."""
    skip = _embedding_ids(model)
    muon, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 2 and id(p) not in skip and "lm_head" not in name and "embed" not in name:
            muon.append(p)
        else:
            other.append(p)
    return muon, other


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on hidden matrices and torch.optim.AdamW on the rest, as one
    Optimizer (one set of param_groups, so lr schedulers and checkpoints see all of it).

    The inner optimizers share the group dicts and the state dict with this one, so a
    scheduler's lr change reaches them. Muon runs with adjust_lr_fn="match_rms_adamw",
    which scales its update to AdamW's RMS so a single learning rate fits both."""

    def __init__(self, muon_params, adamw_params, lr: float = 1e-3, weight_decay: float = 0.0,
                 momentum: float = MUON_MOMENTUM, betas=(0.9, 0.999)):
        groups = []
        if muon_params:
            groups.append({"params": list(muon_params), "use_muon": True})
        decay = [p for p in adamw_params if p.ndim >= 2]
        no_decay = [p for p in adamw_params if p.ndim < 2]
        if decay:
            groups.append({"params": decay, "use_muon": False})
        if no_decay:  # norms and biases: decaying them only hurts
            groups.append({"params": no_decay, "use_muon": False, "weight_decay": 0.0})
        if not groups:
            raise ValueError("train.optimizer: the model has no trainable parameters")
        super().__init__(groups, {"lr": lr, "weight_decay": weight_decay})
        self._momentum, self._betas = momentum, betas
        self._bind()

    def _bind(self) -> None:
        muon_groups = [g for g in self.param_groups if g["use_muon"]]
        adam_groups = [g for g in self.param_groups if not g["use_muon"]]
        self._inner = []
        if muon_groups:
            inner = torch.optim.Muon(muon_groups, lr=muon_groups[0]["lr"], momentum=self._momentum,
                                     adjust_lr_fn="match_rms_adamw")
            self._inner.append(inner)
        if adam_groups:
            self._inner.append(torch.optim.AdamW(adam_groups, lr=adam_groups[0]["lr"], betas=self._betas))
        for inner in self._inner:
            inner.param_groups = [g for g in self.param_groups if g["use_muon"] == isinstance(inner, torch.optim.Muon)]
            inner.state = self.state

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._bind()  # the base class replaced the group dicts and the state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for inner in self._inner:
            inner.step()
        return loss


class MuonFactory:
    """transformers' optimizer-factory protocol: MuonFactory()(model, lr=, weight_decay=)."""

    def __call__(self, model: nn.Module, **kwargs) -> MuonWithAdamW:
        muon, other = split_for_muon(model)
        return MuonWithAdamW(muon, other, **kwargs)


class SophiaG(torch.optim.Optimizer):
    """Sophia with the Gauss-Newton-Bartlett Hessian estimate (Liu et al. 2023, Alg. 2).

    Update: m <- b1 m + (1-b1) g;  every k steps h <- b2 h + (1-b2) ĝ⊙ĝ, where ĝ is the
    gradient of the loss on labels *sampled from the model's own output*;
    θ <- θ - lr * (wd θ + sign(m) * min(|m| / (rho * N * h), 1)), N = tokens per batch.

    The sampled-label gradient needs an extra forward/backward that the Trainer's loop
    does not offer, so the optimizer keeps a reference to the model, remembers the last
    training batch's inputs (a forward pre-hook) and runs that pass itself at step time.
    Without a remembered batch (h stays 0) the update is clipped sign-momentum, which is
    what Sophia does wherever its curvature estimate is tiny.
    """

    def __init__(self, params, model: nn.Module | None = None, lr: float = 1e-4, betas=SOPHIA_BETAS,
                 rho: float = SOPHIA_RHO, weight_decay: float = 0.0, hessian_every: int = SOPHIA_HESSIAN_EVERY):
        if lr < 0 or rho <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("train.optimizer: sophia needs lr >= 0, rho > 0 and betas in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay))
        self.hessian_every = hessian_every
        self._model = model
        self._batch: dict | None = None
        self._steps = 0
        if model is not None:
            model.register_forward_pre_hook(self._remember, with_kwargs=True)

    def _remember(self, module, args, kwargs):
        if module.training and torch.is_grad_enabled():
            ids = kwargs.get("input_ids", args[0] if args else None)
            if isinstance(ids, torch.Tensor):
                mask = kwargs.get("attention_mask")
                self._batch = {"input_ids": ids.detach(),
                               "attention_mask": mask.detach() if isinstance(mask, torch.Tensor) else None}

    def _params(self):
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    @torch.no_grad()
    def update_hessian(self) -> bool:
        """One GNB estimate from the remembered batch; False when there is none."""
        if self._model is None or self._batch is None:
            return False
        params = self._params()
        batch = self._batch
        with torch.enable_grad():
            kwargs = {"input_ids": batch["input_ids"]}
            if batch["attention_mask"] is not None:
                kwargs["attention_mask"] = batch["attention_mask"]
            logits = self._model(**kwargs).logits.float()
            flat = logits.reshape(-1, logits.size(-1))
            sampled = torch.multinomial(torch.softmax(flat.detach(), -1), 1).squeeze(-1)
            if batch["attention_mask"] is not None:
                keep = batch["attention_mask"].reshape(-1).bool()
                flat, sampled = flat[keep], sampled[keep]
            loss = nn.functional.cross_entropy(flat, sampled)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        tokens = max(1, sampled.numel())
        by_id = {id(p): g for p, g in zip(params, grads)}
        for group in self.param_groups:
            b2 = group["betas"][1]
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                g = by_id.get(id(p))
                if g is None:
                    continue
                state = self._state_for(p)
                state["hessian"].mul_(b2).addcmul_(g, g, value=1 - b2)
                state["tokens"] = float(tokens)
        return True

    def _state_for(self, p):
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["tokens"] = 1.0
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._steps % self.hessian_every == 0:
            self.update_hessian()
        self._steps += 1
        for group in self.param_groups:
            b1 = group["betas"][0]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_for(p)
                m, h = state["exp_avg"], state["hessian"]
                if group["weight_decay"] and p.ndim >= 2:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                ratio = (m.abs() / (group["rho"] * state["tokens"] * h + 1e-15)).clamp_(max=1.0)
                p.addcmul_(m.sign(), ratio, value=-group["lr"])
        return loss

    def state_dict(self):
        out = super().state_dict()
        out["sophia_steps"] = self._steps
        return out

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        self._steps = int(state_dict.pop("sophia_steps", 0))
        super().load_state_dict(state_dict)


class SophiaFactory:
    """transformers' optimizer-factory protocol: SophiaFactory()(model, lr=, weight_decay=)."""

    def __call__(self, model: nn.Module, **kwargs) -> SophiaG:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("train.optimizer: the model has no trainable parameters")
        return SophiaG(params, model=model, **kwargs)
