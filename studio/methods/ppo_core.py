"""PPO for causal language models, written here because trl 1.16 has neither a PPO trainer
nor a value-head model (see NOTES-training-libs.md).

One iteration of `train_ppo`:

  1. rollout   sample a completion for each prompt of the batch (model.generate)
  2. score     one scalar per completion (a reward preset or a reward model)
  3. shape     per-token reward = -kl_coef * (logp - ref_logp); the score is added at the
               last real token, so the policy pays for drifting from the reference
  4. GAE       advantages over completion tokens (gamma, gae_lambda), whitened;
               returns = advantages + values (the value head's regression target)
  5. update    ppo_epochs passes over shuffled mini-batches: clipped policy loss
               + vf_coef * clipped value loss - entropy_coef * entropy; grad clip; AdamW

Everything above step 5 is pure tensor code, unit-tested against hand-computed numbers in
tests/test_ppo_core.py. The loop takes plain objects (a model, a tokenizer, prompts, a
reward function, a PPOConfig) so it runs without the studio's loaders.

Tensors over completion tokens are [batch, T]: position t holds the t-th generated token,
its log-prob, the value of the state *before* it, and `mask` is 1 up to and including the
first eos (the eos is an action too: the policy learns when to stop), 0 after.
"""
# Over ~400 lines on purpose: the whole PPO loop (rollout, score, shape, GAE, update) reads as one unit; trl has none to call.
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PPOConfig:
    batch_size: int = 16  # prompts per rollout
    mini_batch_size: int = 8  # rollout rows per gradient step
    ppo_epochs: int = 4  # passes over each rollout
    max_steps: int = 100  # PPO iterations (rollout + update)
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    scheduler: str = "none"  # none | linear | cosine | polynomial (over max_steps iterations)
    warmup_steps: float = 0  # iterations; below 1 a fraction of max_steps
    max_grad_norm: float = 1.0  # 0: no clipping
    clip_range: float = 0.2  # for the policy ratio and for the value change
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    gamma: float = 1.0
    gae_lambda: float = 0.95
    kl_coef: float = 0.05
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    max_new_tokens: int = 8
    seed: int = 42
    log_every: int = 1
    autocast_dtype: torch.dtype | None = None  # bf16/fp16 autocast on a GPU; weights stay fp32


# -- pure tensor functions ------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the real tokens only (padding would drag the mean to 0).
    Whitening keeps the policy step the same size whatever the reward's scale."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)  # unbiased, as in the PPO papers' code
    return (x - mean) * torch.rsqrt(var + eps) * mask


def completion_mask(completion_ids: torch.Tensor, eos_token_ids) -> torch.Tensor:
    """1.0 up to and including the first eos of each row, 0.0 after. Built from eos, not
    from pad: many tokenizers pad with their eos token."""
    ids = torch.as_tensor(list(eos_token_ids if isinstance(eos_token_ids, (list, tuple, set)) else [eos_token_ids]),
                          device=completion_ids.device)
    is_eos = torch.isin(completion_ids, ids).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # eos tokens strictly before t
    return (eos_before == 0).float()


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (masks are a prefix of ones)."""
    return (mask.sum(1).long() - 1).clamp(min=0)


def shape_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                  mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL). The KL term is the simple log-ratio estimate
    logp - ref_logp of the sampled token: its expectation under the policy is KL(pi || ref)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, backwards over completion tokens:

        delta_t = r_t + gamma * V_{t+1} - V_t        (V after the last real token is 0: episode over)
        A_t     = delta_t + gamma * lam * A_{t+1}

    Returns (advantages, returns = advantages + values), both 0 on padding."""
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate: per token max(-A r, -A clip(r, 1-eps, 1+eps)), the pessimistic
    one, so pushing the ratio past the clip edge in the advantage's direction earns nothing.
    Returns (loss, clip fraction, approx KL(old || new) by the low-variance k3 estimator)."""
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, clip_fraction.detach(), approx_kl.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * max((V - R)^2, (V_clipped - R)^2) with V_clipped within clip_range of the rollout's
    value: the value head cannot jump on one batch either. Returns (loss, clip fraction)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


# -- the model: policy + value head on a shared trunk -----------------------------------


class ValueHead(nn.Module):
    """V(state) from the policy's last hidden state: one linear layer."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        # Small weights, zero bias: the first values are ~0, so the first advantages are the
        # rewards themselves rather than noise from a random head.
        nn.init.normal_(self.summary.weight, std=1.0 / math.sqrt(hidden_size + 1) * 0.1)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() uses: without them a left-padded
    prompt would be scored at other positions than it was sampled at."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class PolicyWithValue(nn.Module):
    """The causal LM (full or peft) and a value head reading the same trunk.

    The hidden state is taken from the input of the LM's output layer by a forward hook
    rather than from output_hidden_states: the studio's own architecture does not return
    hidden states, every causal LM has an output layer, and only the last layer is kept."""

    def __init__(self, policy: nn.Module, value_head: ValueHead | None = None):
        super().__init__()
        self.policy = policy
        hidden_size = policy.get_output_embeddings().weight.shape[1]
        self.value_head = value_head if value_head is not None else ValueHead(hidden_size)
        self.value_head.to(next(policy.parameters()).device)

    def forward(self, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        captured = {}

        def grab(module, args):
            captured["hidden"] = args[0]

        handle = self.policy.get_output_embeddings().register_forward_pre_hook(grab)
        try:
            out = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids_for(attention_mask), use_cache=False)
        finally:
            handle.remove()
        return out.logits, self.value_head(captured["hidden"])


def score_tokens(logits: torch.Tensor, sequences: torch.Tensor, prompt_len: int,
                 temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, logits) of the completion tokens. Logits at position i predict token i+1.
    Divided by the sampling temperature so the ratio compares the distributions sampled from."""
    logits = logits[:, prompt_len - 1:-1] / temperature
    return token_logprobs(logits, sequences[:, prompt_len:]), logits


# -- rollout ---------------------------------------------------------------------------


@dataclass
class Rollout:
    sequences: torch.Tensor  # [B, P+T] left-padded prompt + completion
    attention_mask: torch.Tensor  # [B, P+T]
    prompt_len: int
    mask: torch.Tensor  # [B, T] real completion tokens
    texts: list[str]
    scores: torch.Tensor | None = None  # [B]
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


def prompt_text(tokenizer, prompt) -> str:
    """A prompt as the model reads it: a list of chat messages through the chat template
    (with the assistant turn opened), a plain string as it is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def eos_ids(tokenizer, model) -> list[int]:
    ids = model.generation_config.eos_token_id if getattr(model, "generation_config", None) is not None else None
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer has no eos token: PPO needs one to know where a completion ends")
    return ids


@torch.no_grad()
def generate(policy, tokenizer, prompts: list, config: PPOConfig, greedy: bool = False) -> Rollout:
    device = next(policy.parameters()).device
    texts = [prompt_text(tokenizer, p) for p in prompts]
    # Left padding: every completion then starts at the same column (prompt_len).
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        # The chat template already wrote any special tokens the model expects.
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=isinstance(prompts[0], str))
    finally:
        tokenizer.padding_side = old_side
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    if enc["input_ids"].shape[1] == 0:
        raise ValueError("data: the prompts are empty after tokenising; every row needs prompt text")
    eos = eos_ids(tokenizer, policy)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    sample = dict(do_sample=True, temperature=config.temperature, top_k=config.top_k, top_p=config.top_p)
    # A mixture-of-experts config that asks for router logits makes each cached decoding step
    # compute the balancing loss against the whole padded mask (a size mismatch); sampling
    # needs no loss.
    moe = {"output_router_logits": False} if getattr(policy.config, "output_router_logits", False) else {}
    out = policy.generate(**enc, max_new_tokens=config.max_new_tokens, eos_token_id=eos, pad_token_id=pad,
                          **moe, **({"do_sample": False} if greedy else sample))
    prompt_len = enc["input_ids"].shape[1]
    completion = out[:, prompt_len:]
    mask = completion_mask(completion, eos)
    attention_mask = torch.cat([enc["attention_mask"], mask.long()], dim=1)
    decoded = [tokenizer.decode(row[m.bool()], skip_special_tokens=True) for row, m in zip(completion, mask)]
    return Rollout(out, attention_mask, prompt_len, mask, decoded)


def score(reward_fn: Callable, rollout: Rollout, prompts: list, answers: list | None) -> torch.Tensor:
    """The reward function in trl's call shape: fn(completions, answer=..., prompts=...)."""
    values = reward_fn(completions=rollout.texts, answer=answers, prompts=prompts)
    if len(values) != len(rollout.texts):
        raise ValueError(f"method.reward returned {len(values)} scores for {len(rollout.texts)} completions")
    scores = torch.tensor([float(v) for v in values], dtype=torch.float32, device=rollout.mask.device)
    if not torch.isfinite(scores).all():
        raise ValueError("method.reward returned a NaN or infinite score; fix the reward function or model")
    return scores


# -- the loop --------------------------------------------------------------------------


def lr_factor(step: int, total: int, warmup: float, kind: str) -> float:
    """Multiplier of the learning rate at iteration `step` (0-based)."""
    warm = int(warmup * total) if 0 < warmup < 1 else int(warmup)
    if step < warm:
        return (step + 1) / (warm + 1)
    progress = (step - warm) / max(1, total - warm)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "polynomial":
        return (1.0 - progress) ** 2
    return 1.0


class PPOTrainer:
    """Holds the policy+value model, the reference and the optimizer; `step()` runs one
    iteration and returns its metrics."""

    def __init__(self, policy, tokenizer, reward_fn: Callable, config: PPOConfig, ref_model=None,
                 value_head: ValueHead | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn
        torch.manual_seed(config.seed)
        self.model = PolicyWithValue(policy, value_head)
        # The reference: a peft model's own base with the adapter switched off (no second
        # copy in memory), else a frozen copy of the starting weights.
        if ref_model is None and not is_peft(policy):
            ref_model = copy.deepcopy(policy)
        self.ref_model = ref_model
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
        # Dropout stays off throughout (as in the InstructGPT-era PPO code): with it, the new
        # log-probs would differ from the rollout's even before any update.
        self.model.eval()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.params = params
        # fp16 gradients underflow without loss scaling; for fp32/bf16 the scaler is a no-op.
        device = next(self.model.parameters()).device.type
        self.scaler = torch.amp.GradScaler(device, enabled=config.autocast_dtype == torch.float16)
        self.step_count = 0

    @property
    def policy(self):
        return self.model.policy

    def _autocast(self):
        dtype = self.config.autocast_dtype
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=dtype, enabled=dtype is not None)

    @torch.no_grad()
    def _reference_logprobs(self, sequences, attention_mask, prompt_len):
        kw = dict(input_ids=sequences, attention_mask=attention_mask,
                  position_ids=position_ids_for(attention_mask), use_cache=False)
        with self._autocast():
            if self.ref_model is not None:
                logits = self.ref_model(**kw).logits
            else:
                with self.policy.disable_adapter():
                    logits = self.policy(**kw).logits
        return score_tokens(logits, sequences, prompt_len, self.config.temperature)[0]

    @torch.no_grad()
    def rollout(self, prompts: list, answers: list | None) -> Rollout:
        c = self.config
        ro = generate(self.policy, self.tokenizer, prompts, c)
        ro.scores = score(self.reward_fn, ro, prompts, answers)
        logps, refs, values = [], [], []
        for i in range(0, len(prompts), c.mini_batch_size):  # chunks bound the memory of the logits
            seq, att = ro.sequences[i:i + c.mini_batch_size], ro.attention_mask[i:i + c.mini_batch_size]
            with self._autocast():
                logits, vals = self.model(seq, att)
            logps.append(score_tokens(logits, seq, ro.prompt_len, c.temperature)[0])
            values.append(vals[:, ro.prompt_len - 1:-1].float())
            refs.append(self._reference_logprobs(seq, att, ro.prompt_len))
        ro.logprobs, ro.ref_logprobs, ro.values = torch.cat(logps), torch.cat(refs), torch.cat(values)
        return ro

    def step(self, prompts: list, answers: list | None = None) -> dict:
        """One PPO iteration on these prompts; returns the iteration's metrics."""
        c = self.config
        start = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = c.learning_rate * lr_factor(self.step_count, c.max_steps, c.warmup_steps, c.scheduler)
        ro = self.rollout(prompts, answers)
        mask = ro.mask
        rewards, kl = shape_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, mask, c.kl_coef)
        advantages, returns = gae(rewards, ro.values, mask, c.gamma, c.gae_lambda)
        advantages = masked_whiten(advantages, mask)

        sums: dict[str, float] = {}
        n_updates = 0
        batch = len(prompts)
        for _ in range(c.ppo_epochs):
            order = torch.randperm(batch, device=mask.device)
            for i in range(0, batch, c.mini_batch_size):
                idx = order[i:i + c.mini_batch_size]
                stats = self._update(ro, idx, advantages[idx], returns[idx])
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_updates += 1
        self.step_count += 1
        elapsed = time.perf_counter() - start
        lengths = mask.sum(1)
        metrics = {k: v / n_updates for k, v in sums.items()}
        metrics.update(
            reward=float(ro.scores.mean()),
            reward_std=float(ro.scores.std()) if batch > 1 else 0.0,
            kl=float(kl.sum(1).mean()),
            learning_rate=self.optimizer.param_groups[0]["lr"],
            tokens_per_second=float(ro.attention_mask.sum()) / elapsed,
            **{"completions/mean_length": float(lengths.mean())},
        )
        metrics["step"] = self.step_count
        return metrics

    def _update(self, ro: Rollout, idx, advantages, returns) -> dict:
        c = self.config
        seq, att, mask = ro.sequences[idx], ro.attention_mask[idx], ro.mask[idx]
        with self._autocast():
            logits, values = self.model(seq, att)
        logprobs, comp_logits = score_tokens(logits, seq, ro.prompt_len, c.temperature)
        values = values[:, ro.prompt_len - 1:-1].float()
        pg_loss, clip_fraction, approx_kl = policy_loss(logprobs, ro.logprobs[idx], advantages, mask, c.clip_range)
        vf_loss, vf_clip = value_loss(values, ro.values[idx], returns, mask, c.clip_range)
        entropy = masked_mean(entropy_from_logits(comp_logits), mask)
        loss = pg_loss + c.vf_coef * vf_loss - c.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the fp16-scaled ones
        max_norm = c.max_grad_norm if c.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": loss.item(), "policy_loss": pg_loss.item(), "value_loss": vf_loss.item(),
                "entropy": entropy.item(), "clip_fraction": clip_fraction.item(), "approx_kl": approx_kl.item(),
                "value_clip_fraction": vf_clip.item(), "grad_norm": float(grad_norm)}


def mean_reward(policy, tokenizer, prompts: list, answers: list | None, reward_fn: Callable, config: PPOConfig,
                greedy: bool = False) -> float:
    """Mean score of the policy's completions on some prompts (held-out evaluation)."""
    total = 0.0
    for i in range(0, len(prompts), config.batch_size):
        chunk = prompts[i:i + config.batch_size]
        ro = generate(policy, tokenizer, chunk, config, greedy=greedy)
        total += float(score(reward_fn, ro, chunk, None if answers is None else answers[i:i + config.batch_size]).sum())
    return total / max(1, len(prompts))


def train_ppo(policy, tokenizer, prompts: list, answers: list | None, reward_fn: Callable, config: PPOConfig, *,
              ref_model=None, value_head: ValueHead | None = None, log: Callable[[dict], None] | None = None,
              progress: Callable[[int, int], None] | None = None, should_stop: Callable[[], bool] | None = None,
              evaluate: Callable[[int], dict] | None = None, eval_every: int = 0,
              checkpoint: Callable[[int, "PPOTrainer"], None] | None = None, save_every: int = 0) -> PPOTrainer:
    """Run config.max_steps PPO iterations over the prompts (reshuffled each pass) and return
    the trainer (its .model holds the trained policy and value head).

    log gets each iteration's metrics averaged over log_every iterations (the first is
    logged alone); evaluate(step) -> metrics logged as a kind="eval" record every
    eval_every iterations;
    checkpoint(step, trainer) every save_every iterations."""
    if not prompts:
        raise ValueError("data: no prompts to train on")
    trainer = PPOTrainer(policy, tokenizer, reward_fn, config, ref_model=ref_model, value_head=value_head)
    order_rng = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    window: list[dict] = []
    for step in range(1, config.max_steps + 1):
        if should_stop is not None and should_stop():
            break
        picked = []
        while len(picked) < config.batch_size:
            if not order:
                order = torch.randperm(len(prompts), generator=order_rng).tolist()
            picked.append(order.pop())
        metrics = trainer.step([prompts[i] for i in picked], None if answers is None else [answers[i] for i in picked])
        window.append(metrics)
        if step == 1 or step % config.log_every == 0 or step == config.max_steps:
            record = {k: sum(m[k] for m in window) / len(window) for k in window[-1]}
            window = []
            if log is not None:
                log({**record, "step": step})
        if evaluate is not None and eval_every > 0 and step % eval_every == 0:
            evaluated = evaluate(step)
            if log is not None:
                log({**evaluated, "step": step, "kind": "eval"})
        if checkpoint is not None and save_every > 0 and step % save_every == 0 and step < config.max_steps:
            checkpoint(step, trainer)
        if progress is not None:
            progress(step, config.max_steps)
    return trainer
