"""The method-selection advisor: the seed's flowchart as data, walked by pure functions.

Two trees. The method tree starts at the goal and ends at a registry method; the
regime tree then picks which weights train (full / freeze / LoRA / DoRA / QLoRA /
prompt-style) from the memory the run needs against the device's. Every question node
has a decide function that answers it from `Answers` and says why, so the path through
the chart is also the explanation. No UI code and no torch here: the Method tab, the
CLI and the tests call the same functions.

    questions() -> [Question]            what the Method tab asks (choices, help)
    advise(Answers) -> Advice            method, regime, path with reasons, runner-up,
                                         warnings with fixes, recipe of spec fields
    check_choice(method, kind, reward)   warnings when a chosen method and the data disagree
    infer_answers(spec, ...)             what the studio can answer itself
    apply_recipe(spec, recipe)           the "use this" button

The chart and the walk live here; the mismatch checks in advisor_checks, the recipe in
advisor_recipe, the inferred answers in advisor_inputs and the CLI in advisor_cli. Their
public names are importable from here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from studio.advisor_checks import METHOD_FOR_KIND, AdviceWarning, check_choice  # noqa: F401 - public here
from studio.advisor_inputs import (  # noqa: F401 - public here
    GIB, _kind_by_columns, _params_from_name, _sample_rows, detect_data_kind, detect_device_memory,
    guess_model_is_base, infer_answers, kind_of_sources, resolve_model)
from studio.advisor_recipe import SIZES_FILE, apply_recipe, load_sizes, recipe, size_bucket  # noqa: F401 - public here
from studio.methods import REGISTRY
from studio.methods import table as _registry_table
from studio.spec import SpecError

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
HEADROOM = 0.85  # plan to use at most this share of device memory: allocator and CUDA context take the rest
DORA_ROOM = 0.5  # DoRA only when LoRA leaves half the device free: its weight norms cost extra
TINY_DATA_ROWS = 200  # below this, a soft prompt has too little to overfit and LoRA too little to learn from
PROMPT_TUNING_MIN_PARAMS = 1_000_000_000  # prompt tuning catches up with fine-tuning only on large models
REFERENCE_BYTES_PER_PARAM = 2  # DPO's frozen reference copy, in 16-bit
# -- what goes in, what comes out ---------------------------------------------------


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

    def problems(self) -> list[str]:
        out = []
        for name, allowed in (("goal", GOALS), ("wants", WANTS), ("data_kind", DATA_KINDS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                out.append(f"{name}: '{value}' is not one of {', '.join(allowed)} (or leave it empty)")
        return out


class Step(NamedTuple):
    node_id: str
    choice: str
    reason: str


class RunnerUp(NamedTuple):
    method: str
    regime: str
    why: str


Warning = AdviceWarning  # noqa: A001 - the name the Method tab uses; only this module's scope


@dataclass
class Advice:
    method: str
    regime: str
    path: list[Step]
    runner_up: RunnerUp
    regime_runner_up: tuple[str, str]  # (regime, why)
    warnings: list[AdviceWarning]
    recipe: dict
    size_bucket: str

    def node_ids(self) -> list[str]:
        return [s.node_id for s in self.path]

    def to_dict(self) -> dict:
        return {
            "method": self.method, "regime": self.regime,
            "path": [s._asdict() | {"label": NODES[s.node_id].label} for s in self.path],
            "runner_up": self.runner_up._asdict(),
            "regime_runner_up": {"regime": self.regime_runner_up[0], "why": self.regime_runner_up[1]},
            "warnings": [w.to_dict() for w in self.warnings],
            "recipe": self.recipe, "size_bucket": self.size_bucket,
        }


# -- the chart as data ----------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # question | method | regime
    label: str
    parent: str | None = None
    choice: str = ""  # the parent's answer that leads here
    choice_label: str = ""
    value: str = ""  # leaves: the registry method or the regime
    why: str = ""  # leaves: the reason it is the answer
    runner_up: str = ""  # leaves: the alternative ...
    runner_up_why: str = ""  # ... and when it would be better


def _q(id, label, parent=None, choice="", choice_label=""):
    return Node(id, "question", label, parent, choice, choice_label)


def short_name(method: str) -> str:
    """"DPO" for "Direct preference optimisation (DPO)": the name a chart box has room for."""
    title = REGISTRY[method].title
    head, _, rest = title.partition(" (")
    acronym = rest.rstrip(")")
    if acronym and " " not in acronym and len(acronym) <= 6:
        return acronym
    return {"distill": "Distillation", "reward": "Reward model"}.get(method, head)


def _m(id, method, parent, choice, choice_label, why, alt, alt_why):
    return Node(id, "method", short_name(method), parent, choice, choice_label, method, why, alt, alt_why)


def _r(id, regime, label, parent, choice, choice_label, why, alt, alt_why):
    return Node(id, "regime", label, parent, choice, choice_label, regime, why, alt, alt_why)


_PPO_ALT = "GRPO scores groups of samples with the same reward and needs no value model: less memory, fewer knobs"
_GRPO_ALT = "PPO adds a learned value model: finer control of each update, at the cost of memory and tuning"

NODE_LIST = [
    _q("goal", "What is the goal?"),
    _m("sft", "sft", "goal", "instructions", "follow instructions",
       "SFT imitates example conversations: the direct way to teach a format and a behaviour",
       "distill", "with a stronger model sharing the tokenizer, distillation learns its whole output distribution"),
    _q("pref_data", "What feedback data?", "goal", "preferences", "align to preferences"),
    _q("pair_priority", "What matters most?", "pref_data", "pairs", "chosen/rejected pairs"),
    _m("dpo", "dpo", "pair_priority", "simplicity", "simplicity",
       "DPO learns from chosen/rejected pairs with one classification-style loss: no reward model, no sampling",
       "simpo", "SimPO drops the reference model (less memory); it is more sensitive to beta and gamma"),
    _m("orpo", "orpo", "pair_priority", "one_pass", "SFT + alignment at once",
       "ORPO adds an odds-ratio preference term to the SFT loss: a base model learns instructions and preferences in one run",
       "dpo", "SFT first, then DPO: two runs, but each is easier to tune and check"),
    _m("simpo", "simpo", "pair_priority", "reference_free", "no reference model",
       "SimPO compares length-normalised log-probabilities directly: no frozen reference copy in memory",
       "dpo", "DPO's reference model guards against drifting: the safer choice when memory allows"),
    _m("reward", "reward", "pair_priority", "control", "maximum control",
       "a reward model trained on the pairs is what PPO optimises: the first of two runs (then PPO with reward=model:<this run>)",
       "dpo", "DPO uses the same pairs directly, with no reward model and no RL stage: far simpler"),
    _m("kto", "kto", "pref_data", "unpaired", "thumbs up/down labels",
       "KTO learns from single answers marked good or bad: no pairing needed",
       "dpo", "if a good and a bad answer can be paired per prompt, DPO usually learns more per example"),
    _m("grpo_pref", "grpo", "pref_data", "prompts", "checkable prompts",
       "GRPO samples several answers per prompt and rewards the ones a program marks right",
       "ppo", _GRPO_ALT),
    _q("pref_rm", "How much control?", "pref_data", "reward_model", "a reward model"),
    _m("grpo_pref_rm", "grpo", "pref_rm", "simplicity", "simplicity",
       "GRPO uses the reward model as its score with no value model: the simpler online method",
       "ppo", _GRPO_ALT),
    _m("ppo_pref", "ppo", "pref_rm", "control", "maximum control",
       "PPO with a value model and clipped updates: the most control over how the reward shapes the policy",
       "grpo", _PPO_ALT),
    _m("sft_first", "sft", "pref_data", "none", "no preference data yet",
       "no feedback data to align with: teach the behaviour by SFT now, collect preferences from its answers later",
       "kto", "if you can mark existing answers good or bad, KTO aligns with those labels without pairs"),
    _q("domain_start", "Starting model?", "goal", "domain", "adapt to a domain"),
    _m("cpt", "cpt", "domain_start", "existing", "an existing model",
       "CPT continues next-token training on domain text at a low learning rate, keeping what the model knows",
       "sft", "if the material can be written as questions and answers, SFT teaches format and facts together"),
    _m("pretrain", "pretrain", "domain_start", "scratch", "a new model",
       "a model built from scratch must first learn the language from raw text",
       "cpt", "starting from an existing model that already knows the language is far cheaper"),
    _q("reward_source", "What scores answers?", "goal", "reasoning", "reason better"),
    _m("grpo", "grpo", "reward_source", "checkable", "a program checks it",
       "GRPO (DeepSeek-R1 style) samples a group of answers per prompt and learns from the ones the check marks right",
       "ppo", _GRPO_ALT),
    _q("reason_rm", "How much control?", "reward_source", "reward_model", "a reward model"),
    _m("grpo_rm", "grpo", "reason_rm", "simplicity", "simplicity",
       "GRPO with the reward model as its score: group baselines instead of a value model",
       "ppo", _GRPO_ALT),
    _m("ppo", "ppo", "reason_rm", "control", "maximum control",
       "PPO with a value model: the most control over each update",
       "grpo", _PPO_ALT),
    _m("sft_solutions", "sft", "reward_source", "none", "nothing can score it",
       "without an automatic score, imitate worked solutions by SFT",
       "grpo", "once answers can be checked (an 'answer' column and exact_match), GRPO can go beyond the examples"),
    _m("distill", "distill", "goal", "distill", "compress a teacher",
       "distillation trains the student on the teacher's softened output distribution plus the labels",
       "sft", "SFT on the teacher's generated answers needs only its text, works across tokenizers"),
    # the regime tree, asked for whichever method the first tree chose
    _q("regime", "Which weights train?"),
    _r("full_scratch", "full", "Full", "regime", "scratch", "a new model",
       "a new model's weights are random: every one of them has to learn", "lora",
       "adapters on random weights learn little: only for a quick experiment"),
    _r("prompt", "prompt", "Prompt tuning", "regime", "tiny_data", "few examples, big model",
       "a few examples on a large model: a learned soft prompt (thousands of parameters) cannot overfit them",
       "lora", "LoRA learns more once there are a few hundred examples"),
    _r("lora_unknown", "lora", "LoRA", "regime", "unknown", "memory unknown",
       "with the memory unknown, LoRA fits most setups and loses little quality; enter the device memory for a firm answer",
       "qlora", "if memory turns out tight, QLoRA keeps the frozen weights in 4 bits"),
    _q("memory", "Fits in memory?", "regime", "measured", "memory known"),
    _r("full", "full", "Full", "memory", "fits", "full fits",
       "full training fits with room to spare: the highest quality ceiling",
       "lora", "LoRA trains ~1% of the weights: faster steps, small checkpoints, a little less quality"),
    _r("freeze", "freeze", "Freeze", "memory", "tight", "full fits, barely",
       "full training only just fits: train the last blocks in full precision and keep the rest frozen",
       "lora", "LoRA adapts every block with a fraction of the memory"),
    _r("dora", "dora", "DoRA", "memory", "lora_roomy", "LoRA fits with room",
       "full training does not fit; LoRA leaves room, and DoRA's magnitude/direction split usually tracks full training more closely",
       "lora", "plain LoRA is faster per step and simpler to merge"),
    _r("lora", "lora", "LoRA", "memory", "lora_fits", "LoRA fits",
       "full training does not fit; LoRA adapters on 16-bit frozen weights do",
       "qlora", "QLoRA stores the frozen weights in 4 bits: room for a longer context or larger batch, a bit slower"),
    _r("qlora", "qlora", "QLoRA", "memory", "qlora_fits", "only 4-bit fits",
       "even 16-bit LoRA does not fit; QLoRA keeps the frozen weights in 4-bit NF4",
       "lora", "16-bit LoRA is faster and a little more accurate, if batch 1 and a shorter context make it fit"),
    _r("too_big", "qlora", "Too big", "memory", "nothing_fits", "nothing fits",
       "not even QLoRA fits: the smallest regime is the starting point, but the run needs a smaller model or more memory",
       "qlora", "batch 1, gradient checkpointing and a shorter max_seq_len may be enough to make QLoRA fit"),
]
NODES: dict[str, Node] = {n.id: n for n in NODE_LIST}
ROOTS = ("goal", "regime")


def children(node_id: str) -> list[Node]:
    return [n for n in NODE_LIST if n.parent == node_id]


def child(node_id: str, choice: str) -> Node:
    for n in children(node_id):
        if n.choice == choice:
            return n
    raise KeyError(f"{node_id} has no answer '{choice}'")


def method_table() -> list[dict]:
    """The registry's comparison cards: the same data the worker uses."""
    return _registry_table()


# -- the questions the Method tab asks ------------------------------------------------


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


# -- deciding each question -----------------------------------------------------------


def _gb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f} GB"


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
        return cls(a.device_memory_bytes, full, lora, qlora, a.model_size_params, note)

    @property
    def known(self) -> bool:
        return bool(self.device) and self.full is not None

    def fits(self, need: int | None, share: float = HEADROOM) -> bool:
        return need is not None and bool(self.device) and need <= share * self.device

    def share(self, need: int | None) -> str:
        return f"{_gb(need)} of {_gb(self.device)} ({need / self.device:.0%})" if need and self.device else "?"


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
                                  f"reference copy ({_gb(b.params * REFERENCE_BYTES_PER_PARAM)} more)")
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
    if ("prompt" in regimes and a.data_rows is not None and a.data_rows < TINY_DATA_ROWS
            and (b.params or 0) >= PROMPT_TUNING_MIN_PARAMS):
        return "tiny_data", f"only {a.data_rows} examples for a {b.params / 1e9:.1f}B-parameter model"
    if b.known:
        return "measured", f"device memory {_gb(b.device)}; the run's needs from {b.note}"
    return "unknown", "the device memory or the model's needs are not known"


def _memory(a: Answers, b: Budget, method: str) -> tuple[str, str]:
    ok = REGISTRY[method].regimes
    if b.fits(b.full):
        return "fits", f"full training needs {b.share(b.full)}, under the {HEADROOM:.0%} planning limit"
    if "freeze" in ok and b.full <= b.device:
        return "tight", f"full training needs {b.share(b.full)}: above the {HEADROOM:.0%} planning limit"
    if b.fits(b.lora):
        if "dora" in ok and b.fits(b.lora, DORA_ROOM):
            return "lora_roomy", f"full needs {_gb(b.full)}; LoRA needs {b.share(b.lora)}"
        return "lora_fits", f"full needs {_gb(b.full)}; LoRA needs {b.share(b.lora)}"
    if "qlora" in ok and b.fits(b.qlora):
        return "qlora_fits", f"LoRA needs {_gb(b.lora)}; QLoRA needs {b.share(b.qlora)}"
    return "nothing_fits", f"even the smallest regime needs {_gb(b.qlora)} of {_gb(b.device)}"


DECIDE = {"goal": _goal, "pref_data": _pref_data, "pair_priority": _pair_priority, "pref_rm": _rm_control,
          "reason_rm": _rm_control, "domain_start": _domain_start, "reward_source": _reward_source}
DECIDE_REGIME = {"regime": _regime, "memory": _memory}


# -- walking the chart ------------------------------------------------------------------

REGIME_FALLBACK = {"qlora": ("lora",), "dora": ("lora",), "freeze": ("lora",),
                   "prompt": ("prefix", "ia3", "lora"), "prefix": ("prompt", "ia3", "lora"), "ia3": ("lora",)}


def supported_regime(method: str, regime: str) -> str:
    """`regime` if the method trains that way, else the nearest one it does."""
    regimes = REGISTRY[method].regimes
    if regime in regimes:
        return regime
    return next((r for r in REGIME_FALLBACK.get(regime, ()) if r in regimes), "lora" if "lora" in regimes else "full")


def walk(answers: Answers) -> tuple[list[Step], Node, Node]:
    """The path through both trees: (steps, method leaf, regime leaf)."""
    budget = Budget.of(answers)
    path: list[Step] = []
    node = NODES["goal"]
    while node.kind == "question":
        choice, reason = DECIDE[node.id](answers, budget)
        path.append(Step(node.id, choice, reason))
        node = child(node.id, choice)
    method_leaf = node
    path.append(Step(node.id, node.value, node.why))
    node = NODES["regime"]
    while node.kind == "question":
        choice, reason = DECIDE_REGIME[node.id](answers, budget, method_leaf.value)
        path.append(Step(node.id, choice, reason))
        node = child(node.id, choice)
    path.append(Step(node.id, node.value, node.why))
    return path, method_leaf, node


def advise(answers: Answers) -> Advice:
    """Walk the chart for these answers: the method, the regime and why."""
    problems = answers.problems()
    if problems:
        name, fix = problems[0].split(": ", 1)
        raise SpecError(f"advisor.{name}", fix)
    path, method_leaf, regime_leaf = walk(answers)
    method = method_leaf.value
    regime = supported_regime(method, regime_leaf.value)
    alt = method_leaf.runner_up
    bucket = size_bucket(answers.model_size_params, answers.from_scratch)
    return Advice(
        method=method, regime=regime, path=path,
        runner_up=RunnerUp(alt, supported_regime(alt, regime), method_leaf.runner_up_why),
        regime_runner_up=(supported_regime(method, regime_leaf.runner_up), regime_leaf.runner_up_why),
        warnings=_advice_warnings(answers, method_leaf, regime_leaf, regime),
        recipe=recipe(method, regime, bucket), size_bucket=bucket,
    )


def _advice_warnings(a: Answers, method_leaf: Node, regime_leaf: Node, regime: str) -> list[AdviceWarning]:
    method = method_leaf.value
    info = REGISTRY[method]
    reward = None
    if info.family == "online-rl":
        reward = "model:" if a.has_reward_model else ("" if a.checkable is False else "exact_match")
    out = check_choice(method, a.data_kind, reward)
    if method_leaf.id == "sft_first":
        out.append(AdviceWarning(
            "no_preference_data", "There is no preference data yet, so this run can only teach by example (SFT).",
            "After SFT, sample two answers per prompt from the new model and mark the better one (DPO) or mark "
            "single answers good/bad (KTO), then come back with that data."))
    if a.from_scratch and info.needs_base and method != "pretrain":
        out.append(AdviceWarning(
            "needs_pretrained", f"{info.title} refines a model that already speaks the language; this one is new.",
            "Pretrain it first (method pretrain on raw text), then use that run as the model "
            "(model.source=pretrained).", {"method.name": "pretrain"}, "error"))
    if a.model_is_base and method in ("dpo", "simpo", "kto"):
        out.append(AdviceWarning(
            "base_model", f"{info.title} on a base model: it aligns answers the model cannot yet give in chat form.",
            "Run SFT first and align that run, or use ORPO, which does both in one pass with pairs.",
            {"method.name": "orpo"} if a.data_kind in (None, "preference") else {}))
    budget = Budget.of(a)
    if regime_leaf.id == "too_big" or (regime_leaf.id == "full_scratch" and budget.known and not budget.fits(budget.full)):
        need = budget.qlora if regime_leaf.id == "too_big" else budget.full
        out.append(AdviceWarning(
            "does_not_fit", f"The run needs about {_gb(need)} but the device has {_gb(budget.device)}.",
            "Use a smaller model, a shorter max_seq_len, batch size 1 with more accumulation and gradient "
            "checkpointing, or plan for a device with more memory.",
            {"train.batch_size": 1, "train.gradient_checkpointing": "on"}, "error"))
    if regime != regime_leaf.value:
        fix_apply = {"method.name": "grpo", "method.regime": regime_leaf.value} if method == "ppo" else {}
        out.append(AdviceWarning(
            "regime_unsupported", f"{info.title} cannot train with {regime_leaf.value} here; using {regime}.",
            "GRPO trains with QLoRA and does the same job with less memory." if fix_apply
            else f"Choose a method that supports {regime_leaf.value}, or free memory for {regime}.", fix_apply))
    if regime_leaf.id == "lora_unknown":
        out.append(AdviceWarning(
            "memory_unknown", "The device memory or the model's memory need is unknown, so the regime is a guess.",
            "Enter the device memory (GB) and pick the model in the Model tab for its estimate.", level="info"))
    return out
