"""What goes into the advisor: the answers it may know (each None when unknown, and
then assumed and said so), their allowed values, and the questions the Method tab asks
to fill them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GOALS = {
    "instructions": "follow instructions / chat",
    "preferences": "align to preferences",
    "domain": "adapt to a domain (or learn a language)",
    "reasoning": "reason better, with a checkable reward",
    "distill": "compress a teacher into a smaller model",
}
WANTS = {
    "simplicity": "the simplest method that works",
    "one_pass": "instruction tuning and alignment in one pass",
    "reasoning": "DeepSeek-style reasoning",
    "control": "maximum control over the reward",
    "reference_free": "no reference model (less memory)",
}
DATA_KINDS = ("text", "conversation", "preference", "unpaired", "prompt")
REGIME_NAMES = {"full": "Full", "freeze": "Freeze", "lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA",
                "prefix": "Prefix tuning", "prompt": "Prompt tuning", "ia3": "IA3"}


@dataclass
class Answers:
    """Everything the advisor may know; None means unknown (the advisor assumes and says so)."""

    goal: str | None = None  # a key of GOALS
    data_kind: str | None = None  # one of DATA_KINDS
    has_reward_model: bool | None = None
    wants: str | None = None  # a key of WANTS
    model_is_base: bool | None = None
    from_scratch: bool | None = None  # the Model tab builds a new model
    checkable: bool | None = None  # a program can score an answer (a number, a unit test)
    memory_needed_full_bytes: int | None = None
    memory_needed_lora_bytes: int | None = None
    memory_needed_qlora_bytes: int | None = None
    device_memory_bytes: int | None = None
    model_size_params: int | None = None
    data_rows: int | None = None
    # tokens per row the run trains on: the data's p95 after truncation (studio.advisor.lengths),
    # or the length the person set; None = the model's max_seq_len
    seq_len: int | None = None
    seq_len_source: str = ""
    # what the estimate reads for this model (a ModelSpec or a config.json dict): with it the
    # advisor checks each recommendation against the device (studio.advisor.fit)
    model: object = dataclasses.field(default=None, repr=False, compare=False)
    precision: str = "bf16"  # the planned compute dtype (GPUs train in bf16)

    def problems(self) -> list[str]:
        out = []
        for name, allowed in (("goal", GOALS), ("wants", WANTS), ("data_kind", DATA_KINDS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                out.append(f"{name}: '{value}' is not one of {', '.join(allowed)} (or leave it empty)")
        return out


@dataclass(frozen=True)
class Question:
    field: str  # the Answers field it fills
    text: str
    help: str
    kind: str  # choice | bool | number
    choices: tuple = ()  # (value, label) pairs; value None = "not sure"
    inferred_from: str = ""  # where the studio can answer it itself
    unit: str = ""  # "GB": shown in GiB, stored in bytes (x 1024**3)


_UNSURE = ((None, "not sure / let the studio decide"),)
_YES_NO = ((True, "yes"), (False, "no")) + _UNSURE


def questions() -> list[Question]:
    """The Method tab's questions, in the order to ask them."""
    return [
        Question("goal", "What should training achieve?",
                 "The outcome you want from this run; the advisor can guess it from the data.",
                 "choice", tuple(GOALS.items()) + _UNSURE),
        Question("data_kind", "What data do you have?",
                 "Filled from the Data tab's detected format; change it if the detection is wrong.",
                 "choice", (("conversation", "conversations or instruction/answer pairs"),
                            ("preference", "preference pairs: prompt, chosen, rejected"),
                            ("unpaired", "answers labelled good/bad (thumbs up/down)"),
                            ("prompt", "prompts, optionally with a checkable answer"),
                            ("text", "raw text")) + _UNSURE, "Data tab"),
        Question("wants", "What matters most?",
                 "Breaks ties between methods that fit the same data.", "choice", tuple(WANTS.items()) + _UNSURE),
        Question("has_reward_model", "Do you have a trained reward model?",
                 "A run of the 'reward' method, or a sequence-classification model folder.", "bool", _YES_NO,
                 "Method tab (reward = model:...)"),
        Question("checkable", "Can a program check an answer?",
                 "E.g. a number to compare (exact_match) or tests to run.", "bool", _YES_NO),
        Question("model_is_base", "Is the model a base model (not yet instruction-tuned)?",
                 "Read from the model name, its chat template, or the run that trained it.", "bool", _YES_NO,
                 "Model tab"),
        Question("from_scratch", "Is the model built from scratch?", "The Model tab's source.", "bool", _YES_NO,
                 "Model tab"),
        Question("device_memory_bytes", "Device memory",
                 "Detected on this machine; enter the target GPU's memory to plan for another one.",
                 "number", inferred_from="detected", unit="GB"),
        Question("memory_needed_full_bytes", "Memory needed for full training",
                 "From the Model tab's estimate.", "number", inferred_from="Model tab estimate", unit="GB"),
        Question("data_rows", "Number of training examples", "From the Data tab.", "number",
                 inferred_from="Data tab"),
    ]

