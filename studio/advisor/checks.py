"""Warnings when a training method and the data (or reward) disagree, each with its fix.

Shared by the advisor's recommendation and the Method tab's check of the person's own
choice, so both say the same thing about the same mismatch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from studio.data.formats import CONVERSIONS, KIND_NEEDS
from studio.methods import REGISTRY


@dataclass
class AdviceWarning:
    code: str
    message: str
    fix: str
    apply: dict = field(default_factory=dict)  # spec fields that carry out the fix, when one click can
    level: str = "warning"  # "error": it will not train as is; "warning": it trains, badly; "info"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


METHOD_FOR_KIND = {"text": "cpt", "conversation": "sft", "preference": "dpo", "unpaired": "kto", "prompt": "grpo"}
_NEEDS_CODE = {"preference": "needs_pairs", "unpaired": "needs_labels", "prompt": "needs_prompts",
               "text": "needs_text", "conversation": "needs_conversations"}


def _kind_words(kind: str) -> str:
    return KIND_NEEDS.get(kind, kind)


def check_choice(method_name: str, data_kind: str | None, reward=None) -> list[AdviceWarning]:
    """What is wrong with training `method_name` on `data_kind` data with `reward`
    (method.reward: a preset name, "model:<dir>", or empty/None for none), each with the fix."""
    info = REGISTRY.get(method_name)
    if info is None:
        return [AdviceWarning("unknown_method", f"'{method_name}' is not a method.",
                              f"Choose one of {', '.join(REGISTRY)}.", level="error")]
    out: list[AdviceWarning] = []
    if data_kind and data_kind not in info.data_kinds:
        via = next((k for k in info.data_kinds if k in CONVERSIONS.get(data_kind, ())), None)
        if via:
            out.append(AdviceWarning(
                "data_converted", f"{info.title} reads {via} rows; these {data_kind} rows will be converted.",
                "Nothing to do, unless rows without the needed parts should count: check the Data tab's preview.",
                level="info"))
        else:
            alt = METHOD_FOR_KIND.get(data_kind, "sft")
            out.append(AdviceWarning(
                _NEEDS_CODE[info.data_kinds[0]],
                f"{info.title} needs {_kind_words(info.data_kinds[0])}; this data is {_kind_words(data_kind)}.",
                f"Switch to {REGISTRY[alt].title}, which trains on this data, or load {_kind_words(info.data_kinds[0])}.",
                {"method.name": alt}, "error"))
    if info.family == "online-rl":
        text = "" if reward is None or reward is False else ("model:" if reward is True else str(reward).strip())
        if not text:
            out.append(AdviceWarning(
                "no_reward", f"{info.title} learns from a reward that scores its samples, and none is set.",
                "Set method.reward to a preset (exact_match compares with the data's 'answer' column) or to "
                "model:<a reward-model run>.", {"method.reward": "exact_match"}, "error"))
        elif method_name == "ppo" and not text.startswith("model:"):
            out.append(AdviceWarning(
                "ppo_without_reward_model",
                f"PPO with the rule reward '{text}': its value model and extra tuning buy little over GRPO here.",
                "Train a reward model on preference pairs (method reward) and set method.reward=model:<that run>, "
                "or switch to GRPO for a rule reward.", {"method.name": "grpo"}))
    return out
