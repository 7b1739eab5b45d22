"""The seed's flowchart as data. Two trees: the method tree starts at the goal and ends
at a registry method; the regime tree then picks which weights train. Every node names
the answer that leads to it; leaves say why they are the answer and what the runner-up
is. studio.advisor.decide answers the questions, studio.advisor.advice follows them."""
from __future__ import annotations

from dataclasses import dataclass

from studio.methods import REGISTRY
from studio.methods import table as _registry_table


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

