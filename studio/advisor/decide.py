"""Deciding each question of the chart from the Answers, with the reason: one function
per question node, and the memory budget the regime questions weigh."""
from __future__ import annotations

from dataclasses import dataclass

from studio.advisor.answers import GOALS, WANTS, Answers
from studio.methods import REGISTRY
from studio.units import gib

HEADROOM = 0.85  # plan to use at most this share of device memory: allocator and CUDA context take the rest
DORA_ROOM = 0.5  # DoRA only when LoRA leaves half the device free: its weight norms cost extra
TINY_DATA_ROWS = 200  # below this, a soft prompt has too little to overfit and LoRA too little to learn from
PROMPT_TUNING_MIN_PARAMS = 1_000_000_000  # prompt tuning catches up with fine-tuning only on large models
REFERENCE_BYTES_PER_PARAM = 2  # DPO's frozen reference copy, in 16-bit


@dataclass
class Budget:
    """Memory figures for the regime question, filled in from params when not given."""

    device: int | None
    full: int | None
    lora: int | None
    qlora: int | None
    params: int | None
    note: str = ""

    @classmethod
    def of(cls, a: Answers) -> "Budget":
        full, lora, qlora = a.memory_needed_full_bytes, a.memory_needed_lora_bytes, a.memory_needed_qlora_bytes
        note = "the estimate"
        # without a parameter count, full training's 16 B/param gives a conservative one
        params = a.model_size_params or (full // 16 if full else None)
        if params and None in (full, lora, qlora):
            rough = rough_memory(params)
            full, lora, qlora = full or rough["full"], lora or rough["lora"], qlora or rough["qlora"]
            note = "a rule of thumb on the parameter count (weights, gradients, optimizer; activations on top)"
        if a.model is not None and a.device_memory_bytes:
            from studio.advisor.fit import lean_needs

            try:
                needs = lean_needs(a)
            except (ValueError, KeyError):  # an estimate that cannot read the model: the figures given stand
                needs = None
            if needs:
                full, lora, qlora = needs["full"], needs["lora"], needs["qlora"]
                tokens = f"{a.seq_len} tokens a row ({a.seq_len_source})" if a.seq_len else "the model's max_seq_len"
                note = (f"the estimate at {tokens}, each regime with the fallbacks it needs (checkpointing, "
                        "8-bit AdamW, a smaller micro-batch)")
        return cls(a.device_memory_bytes, full, lora, qlora, a.model_size_params, note)

    @property
    def known(self) -> bool:
        return bool(self.device) and self.full is not None

    def fits(self, need: int | None, share: float = HEADROOM) -> bool:
        return need is not None and bool(self.device) and need <= share * self.device

    def share(self, need: int | None) -> str:
        return f"{gib(need, 1)} of {gib(self.device, 1)} ({need / self.device:.0%})" if need and self.device else "?"


def rough_memory(params: int) -> dict:
    """Bytes for a training step by regime, from the parameter count alone: mixed-precision
    AdamW full training ~16 B/param; LoRA: 16-bit frozen weights plus ~1% adapters with
    their fp32 states; QLoRA: 4-bit weights with quantisation constants plus the same."""
    adapters = int(params * 0.01 * 16)
    return {"full": params * 16, "lora": params * 2 + adapters, "qlora": int(params * 0.55) + adapters}


def _goal(a: Answers, b: Budget) -> tuple[str, str]:
    if a.goal:
        return a.goal, f"you chose to {GOALS[a.goal]}"
    by_kind = {"preference": ("preferences", "the data holds preference pairs, which only alignment methods use"),
               "unpaired": ("preferences", "the data holds answers labelled good/bad: alignment data"),
               "prompt": ("reasoning", "the data holds prompts to answer: training on sampled answers with a reward"),
               "text": ("domain", "the data is raw text: language or domain knowledge, not conversations"),
               "conversation": ("instructions", "the data holds conversations to imitate")}
    if a.wants == "reasoning":
        return "reasoning", "you want DeepSeek-style reasoning"
    if a.data_kind in by_kind:
        return by_kind[a.data_kind]
    return "instructions", "no goal or data given: teaching instructions is the usual first step"


def _pref_data(a: Answers, b: Budget) -> tuple[str, str]:
    rm = a.has_reward_model
    if a.data_kind == "preference":
        if rm and a.wants == "control":
            return "reward_model", "you have a reward model and want control: optimise it online"
        return "pairs", "the data holds chosen/rejected pairs"
    if a.data_kind == "unpaired":
        return "unpaired", "the data holds single answers labelled good or bad"
    if rm:
        return "reward_model", "you have a reward model to score sampled answers"
    if a.data_kind == "prompt":
        return "prompts", "the data holds prompts; their answers can be checked by a reward preset"
    if a.data_kind in ("conversation", "text"):
        return "none", f"the data is {a.data_kind}, with no preferences or reward to align with"
    if a.wants == "reasoning":
        return "prompts", "you want reasoning: prompts with checkable answers (data kind not known yet)"
    return "pairs", "data kind not known yet: assuming preference pairs, the most common feedback data"


def _pair_priority(a: Answers, b: Budget) -> tuple[str, str]:
    if a.wants in ("simplicity", "one_pass", "reference_free", "control"):
        return a.wants, f"you want {WANTS[a.wants]}"
    if a.model_is_base:
        return "one_pass", "the model is a base model: it needs instruction tuning as well as alignment"
    if b.known and b.params and b.fits(b.full) and not b.fits(b.full + b.params * REFERENCE_BYTES_PER_PARAM):
        return "reference_free", (f"full training fits ({b.share(b.full)}) but not with DPO's frozen "
                                  f"reference copy ({gib(b.params * REFERENCE_BYTES_PER_PARAM, 1)} more)")
    return "simplicity", "no stronger preference given: the simple, stable default for pairs"


def _rm_control(a: Answers, b: Budget) -> tuple[str, str]:
    if a.wants == "control":
        return "control", "you want maximum control over the reward"
    return "simplicity", "no need for PPO's extra control: the simpler online method"


def _domain_start(a: Answers, b: Budget) -> tuple[str, str]:
    if a.from_scratch:
        return "scratch", "the Model tab builds a new model"
    if a.from_scratch is None:
        return "existing", "assuming an existing model (choose 'from scratch' to pretrain a new one)"
    return "existing", "the model is an existing one"


def _reward_source(a: Answers, b: Budget) -> tuple[str, str]:
    if a.has_reward_model:
        return "reward_model", "you have a reward model"
    if a.checkable is False:
        return "none", "you said no program can check an answer"
    if a.data_kind == "text":
        return "none", "raw text has no prompts and answers to score"
    if a.data_kind == "prompt":
        return "checkable", "prompts with answers: a reward preset (exact_match) checks each sample"
    if a.data_kind:
        return "checkable", f"{a.data_kind} rows convert to prompts with the reference answer to check against"
    return "checkable", "assuming prompts with checkable answers (load data to confirm)"


def _regime(a: Answers, b: Budget, method: str) -> tuple[str, str]:
    if a.from_scratch:
        return "scratch", "the model is new: nothing pretrained to keep frozen"
    regimes = REGISTRY[method].regimes
    # a soft prompt still runs the whole 16-bit model: only where that fits (or memory is unknown)
    if ("prompt" in regimes and a.data_rows is not None and a.data_rows < TINY_DATA_ROWS
            and (b.params or 0) >= PROMPT_TUNING_MIN_PARAMS and (not b.known or b.fits(b.lora))):
        return "tiny_data", f"only {a.data_rows} examples for a {b.params / 1e9:.1f}B-parameter model"
    if b.known:
        return "measured", f"device memory {gib(b.device, 1)}; the run's needs from {b.note}"
    return "unknown", "the device memory or the model's needs are not known"


def _memory(a: Answers, b: Budget, method: str) -> tuple[str, str]:
    ok = REGISTRY[method].regimes
    if b.fits(b.full):
        return "fits", f"full training needs {b.share(b.full)}, under the {HEADROOM:.0%} planning limit"
    if "freeze" in ok and b.full <= b.device:
        return "tight", f"full training needs {b.share(b.full)}: above the {HEADROOM:.0%} planning limit"
    if b.fits(b.lora):
        if "dora" in ok and b.fits(b.lora, DORA_ROOM):
            return "lora_roomy", f"full needs {gib(b.full, 1)}; LoRA needs {b.share(b.lora)}"
        return "lora_fits", f"full needs {gib(b.full, 1)}; LoRA needs {b.share(b.lora)}"
    if "qlora" in ok and b.fits(b.qlora):
        return "qlora_fits", f"LoRA needs {gib(b.lora, 1)}; QLoRA needs {b.share(b.qlora)}"
    return "nothing_fits", f"even the smallest regime needs {gib(b.qlora, 1)} of {gib(b.device, 1)}"


DECIDE = {"goal": _goal, "pref_data": _pref_data, "pair_priority": _pair_priority, "pref_rm": _rm_control,
          "reason_rm": _rm_control, "domain_start": _domain_start, "reward_source": _reward_source}
DECIDE_REGIME = {"regime": _regime, "memory": _memory}
