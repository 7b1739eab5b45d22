"""The method registry: name -> what the method needs and how it trains.

This module is data only and imports nothing heavy, so the UI, the advisor and the
spec validator can read it. Each method's training code lives in its own module
(`module`), imported by the worker only when that method runs; trl and peft imports
stay inside those modules.

Data kinds (what studio.data normalises rows into):
  text          {"text": str}                                  pretraining / CPT
  conversation  {"messages": [{"role", "content"}, ...]}       SFT, distillation
  preference    {"prompt": [...msgs], "chosen": [...], "rejected": [...]}
  unpaired      {"prompt": [...msgs], "completion": [...], "label": bool}
  prompt        {"prompt": [...msgs], "answer": str | None}   GRPO / PPO
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

ADAPTER_REGIMES = ("lora", "qlora", "dora")
ALL_REGIMES = ("full", "freeze", "lora", "qlora", "dora", "prefix", "prompt", "ia3")


@dataclass(frozen=True, kw_only=True)  # keyword-only: each registry entry reads as a card
class Method:
    name: str
    title: str
    family: str  # pretraining | supervised | preference | online-rl | transfer
    data_kinds: tuple[str, ...]  # the data kinds it accepts, first is preferred
    regimes: tuple[str, ...]
    module: str  # studio.methods.<module> holds train(ctx)
    needs_base: bool  # True: refines an existing model (a scratch model makes no sense)
    reads: tuple[str, ...]  # the MethodSpec fields it uses (beyond regime/adapter fields)
    metric_keys: tuple[str, ...]  # keys it adds to metrics.jsonl besides loss/lr/grad_norm
    # the comparison card (seed documentation's quick reference)
    card_type: str
    use_case: str
    memory: str
    speed: str
    data_needed: str
    typical_lr: float
    defaults: dict = field(default_factory=dict)  # "method.x"/"train.x" -> value

    def load(self):
        """The module with this method's train(ctx)."""
        return importlib.import_module(f"studio.methods.{self.module}")


_PREF_REGIMES = ("full", "freeze", "lora", "qlora", "dora")

REGISTRY: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            name="pretrain", title="Pretraining", family="pretraining", data_kinds=("text",),
            regimes=("full", "freeze", "lora", "qlora"), module="causal_lm", needs_base=False, reads=(),
            metric_keys=("eval_loss", "perplexity"), card_type="Pre-training",
            use_case="Learn a language from scratch on raw text", memory="High", speed="Slow",
            data_needed="Raw text", typical_lr=5e-4, defaults={"train.learning_rate": 1e-3, "data.packing": True},
        ),
        Method(
            name="cpt", title="Continued pretraining (CPT)", family="pretraining", data_kinds=("text",),
            regimes=_PREF_REGIMES, module="causal_lm", needs_base=True, reads=(),
            metric_keys=("eval_loss", "perplexity"), card_type="Pre-training",
            use_case="Domain adaptation on unlabelled text", memory="High", speed="Slow",
            data_needed="Raw domain text", typical_lr=5e-6,
            defaults={"train.learning_rate": 5e-6, "data.packing": True},
        ),
        Method(
            name="sft", title="Supervised fine-tuning (SFT)", family="supervised", data_kinds=("conversation",),
            regimes=ALL_REGIMES, module="sft", needs_base=False, reads=(),
            metric_keys=("mean_token_accuracy", "entropy", "eval_loss"), card_type="Full weights or PEFT",
            use_case="Teach instructions and chat", memory="High (full) / Low (LoRA)", speed="Fast",
            data_needed="Conversations or prompt/completion", typical_lr=2e-5,
        ),
        Method(
            name="distill", title="Knowledge distillation", family="transfer", data_kinds=("conversation", "text"),
            regimes=("full", "lora", "dora"), module="distill", needs_base=False,
            reads=("teacher", "distill_temperature", "distill_alpha"),
            metric_keys=("loss_kl", "loss_ce", "eval_loss"), card_type="Transfer",
            use_case="Compress a teacher into a smaller student", memory="Medium", speed="Medium",
            data_needed="Prompts/text the teacher scores", typical_lr=2e-5,
        ),
        Method(
            name="reward", title="Reward modelling", family="preference", data_kinds=("preference",),
            regimes=_PREF_REGIMES, module="reward", needs_base=True, reads=(),
            metric_keys=("accuracy", "margin", "mean_reward", "eval_accuracy"), card_type="Preference",
            use_case="Score answers; the reward for PPO/GRPO", memory="Medium", speed="Fast",
            data_needed="Preference pairs", typical_lr=1e-5,
        ),
        Method(
            name="dpo", title="Direct preference optimisation (DPO)", family="preference",
            data_kinds=("preference",), regimes=_PREF_REGIMES, module="preference", needs_base=True,
            reads=("beta", "loss_type", "reference_model"),
            metric_keys=("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
            card_type="Preference", use_case="Align to preferences, simply and stably", memory="Medium",
            speed="Fast", data_needed="Preference pairs", typical_lr=5e-7, defaults={"method.beta": 0.1},
        ),
        Method(
            name="orpo", title="ORPO (SFT + preference in one pass)", family="preference",
            data_kinds=("preference",), regimes=_PREF_REGIMES, module="preference", needs_base=False,
            reads=("beta",),
            metric_keys=("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"),
            card_type="Preference", use_case="Instruction tuning and alignment in one pass", memory="Medium",
            speed="Fast", data_needed="Preference pairs", typical_lr=8e-6, defaults={"method.beta": 0.1},
        ),
        Method(
            name="simpo", title="SimPO (reference-free preference)", family="preference",
            data_kinds=("preference",), regimes=_PREF_REGIMES, module="preference", needs_base=True,
            reads=("beta", "simpo_gamma", "loss_type"),
            metric_keys=("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
            card_type="Preference", use_case="Preference alignment without a reference model", memory="Low-Medium",
            speed="Fast", data_needed="Preference pairs", typical_lr=1e-6, defaults={"method.beta": 2.0},
        ),
        Method(
            name="kto", title="KTO (unpaired preference)", family="preference",
            data_kinds=("unpaired", "preference"), regimes=_PREF_REGIMES, module="preference", needs_base=True,
            reads=("beta", "desirable_weight", "undesirable_weight", "reference_model"),
            metric_keys=("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"), card_type="Preference",
            use_case="Align from thumbs-up/down labels", memory="Medium", speed="Fast",
            data_needed="Completions labelled good/bad", typical_lr=5e-7, defaults={"method.beta": 0.1},
        ),
        Method(
            name="grpo", title="GRPO (group relative policy optimisation)", family="online-rl",
            data_kinds=("prompt",), regimes=("full", "lora", "qlora", "dora"), module="grpo", needs_base=True,
            reads=("reward", "group_size", "temperature", "beta", "max_new_tokens", "top_k", "top_p"),
            metric_keys=("reward", "reward_std", "kl", "entropy", "completions/mean_length"), card_type="RL",
            use_case="Reasoning with a checkable reward (DeepSeek style)", memory="Medium", speed="Medium",
            data_needed="Prompts + a reward", typical_lr=1e-6, defaults={"method.beta": 0.04},
        ),
        Method(
            name="ppo", title="PPO (classic RLHF)", family="online-rl", data_kinds=("prompt",),
            regimes=("full", "lora", "dora"), module="ppo", needs_base=True,
            reads=("reward", "ppo_epochs", "clip_range", "vf_coef", "gamma", "gae_lambda", "kl_coef",
             "mini_batch_size", "temperature", "top_k", "top_p", "max_new_tokens"),
            metric_keys=("reward", "reward_std", "kl", "entropy", "value_loss", "policy_loss", "clip_fraction"),
            card_type="RL", use_case="Maximum control over the reward signal", memory="High", speed="Slow",
            data_needed="Prompts + a reward model or preset", typical_lr=1e-6,
        ),
    ]
}


def method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; choose one of {', '.join(REGISTRY)}") from None


def table() -> list[dict]:
    """The method cards as rows (the Method tab's comparison table and `studio methods`)."""
    return [
        {
            "name": m.name, "title": m.title, "type": m.card_type, "use_case": m.use_case,
            "memory": m.memory, "speed": m.speed, "data": m.data_needed,
            "data_kinds": list(m.data_kinds), "regimes": list(m.regimes),
            "typical_lr": m.typical_lr, "defaults": dict(m.defaults),
        }
        for m in REGISTRY.values()
    ]
