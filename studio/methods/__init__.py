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


@dataclass(frozen=True)
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
            "pretrain", "Pretraining", "pretraining", ("text",), ("full", "freeze", "lora", "qlora"),
            "causal_lm", False, (), ("eval_loss", "perplexity"),
            "Pre-training", "Learn a language from scratch on raw text", "High", "Slow",
            "Raw text", 5e-4, {"train.learning_rate": 1e-3, "data.packing": True},
        ),
        Method(
            "cpt", "Continued pretraining (CPT)", "pretraining", ("text",), _PREF_REGIMES,
            "causal_lm", True, (), ("eval_loss", "perplexity"),
            "Pre-training", "Domain adaptation on unlabelled text", "High", "Slow",
            "Raw domain text", 5e-6, {"train.learning_rate": 5e-6, "data.packing": True},
        ),
        Method(
            "sft", "Supervised fine-tuning (SFT)", "supervised", ("conversation",), ALL_REGIMES,
            "sft", False, (), ("mean_token_accuracy", "entropy", "eval_loss"),
            "Full weights or PEFT", "Teach instructions and chat", "High (full) / Low (LoRA)",
            "Fast", "Conversations or prompt/completion", 2e-5, {},
        ),
        Method(
            "distill", "Knowledge distillation", "transfer", ("conversation", "text"), ("full", "lora", "dora"),
            "distill", False, ("teacher", "distill_temperature", "distill_alpha"),
            ("loss_kl", "loss_ce", "eval_loss"),
            "Transfer", "Compress a teacher into a smaller student", "Medium", "Medium",
            "Prompts/text the teacher scores", 2e-5, {},
        ),
        Method(
            "reward", "Reward modelling", "preference", ("preference",), _PREF_REGIMES,
            "reward", True, (), ("accuracy", "margin", "mean_reward", "eval_accuracy"),
            "Preference", "Score answers; the reward for PPO/GRPO", "Medium", "Fast",
            "Preference pairs", 1e-5, {},
        ),
        Method(
            "dpo", "Direct preference optimisation (DPO)", "preference", ("preference",), _PREF_REGIMES,
            "preference", True, ("beta", "loss_type", "reference_model"),
            ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
            "Preference", "Align to preferences, simply and stably", "Medium", "Fast",
            "Preference pairs", 5e-7, {"method.beta": 0.1},
        ),
        Method(
            "orpo", "ORPO (SFT + preference in one pass)", "preference", ("preference",), _PREF_REGIMES,
            "preference", False, ("beta",),
            ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"),
            "Preference", "Instruction tuning and alignment in one pass", "Medium", "Fast",
            "Preference pairs", 8e-6, {"method.beta": 0.1},
        ),
        Method(
            "simpo", "SimPO (reference-free preference)", "preference", ("preference",), _PREF_REGIMES,
            "preference", True, ("beta", "simpo_gamma", "loss_type"),
            ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
            "Preference", "Preference alignment without a reference model", "Low-Medium", "Fast",
            "Preference pairs", 1e-6, {"method.beta": 2.0},
        ),
        Method(
            "kto", "KTO (unpaired preference)", "preference", ("unpaired", "preference"), _PREF_REGIMES,
            "preference", True, ("beta", "desirable_weight", "undesirable_weight", "reference_model"),
            ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"),
            "Preference", "Align from thumbs-up/down labels", "Medium", "Fast",
            "Completions labelled good/bad", 5e-7, {"method.beta": 0.1},
        ),
        Method(
            "grpo", "GRPO (group relative policy optimisation)", "online-rl", ("prompt",), ("full", "lora", "qlora", "dora"),
            "grpo", True, ("reward", "group_size", "temperature", "beta", "max_new_tokens", "top_k", "top_p"),
            ("reward", "reward_std", "kl", "entropy", "completions/mean_length"),
            "RL", "Reasoning with a checkable reward (DeepSeek style)", "Medium", "Medium",
            "Prompts + a reward", 1e-6, {"method.beta": 0.04},
        ),
        Method(
            "ppo", "PPO (classic RLHF)", "online-rl", ("prompt",), ("full", "lora", "dora"),
            "ppo", True,
            ("reward", "ppo_epochs", "clip_range", "vf_coef", "gamma", "gae_lambda", "kl_coef",
             "mini_batch_size", "temperature", "top_k", "top_p", "max_new_tokens"),
            ("reward", "reward_std", "kl", "entropy", "value_loss", "policy_loss", "clip_fraction"),
            "RL", "Maximum control over the reward signal", "High", "Slow",
            "Prompts + a reward model or preset", 1e-6, {},
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
