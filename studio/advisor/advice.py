"""Walking the chart: the path through both trees for a set of Answers, the advice at
its end (method, regime, runner-ups, warnings with fixes, the recipe) and why."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from studio.advisor.answers import Answers
from studio.advisor.chart import NODES, Node, child
from studio.advisor.checks import AdviceWarning, check_choice
from studio.advisor.decide import DECIDE, DECIDE_REGIME, HEADROOM, Budget
from studio.advisor.fit import OFFLOAD_NOTE
from studio.advisor.recipe import recipe_with_reasons, size_bucket
from studio.methods import REGISTRY
from studio.spec import SpecError
from studio.units import gib


class Step(NamedTuple):
    node_id: str
    choice: str
    reason: str


class RunnerUp(NamedTuple):
    method: str
    regime: str
    why: str


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
    reasons: dict = dataclasses.field(default_factory=dict)  # recipe field -> one-line reason
    fit: dict | None = None  # the pick's memory against the device (studio.advisor.fit.Fit)

    def node_ids(self) -> list[str]:
        return [s.node_id for s in self.path]

    def to_dict(self) -> dict:
        return {
            "method": self.method, "regime": self.regime,
            "path": [s._asdict() | {"label": NODES[s.node_id].label} for s in self.path],
            "runner_up": self.runner_up._asdict(),
            "regime_runner_up": {"regime": self.regime_runner_up[0], "why": self.regime_runner_up[1]},
            "warnings": [w.to_dict() for w in self.warnings],
            "recipe": self.recipe, "size_bucket": self.size_bucket, "reasons": self.reasons, "fit": self.fit,
        }



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
    fields, reasons = recipe_with_reasons(method, regime, bucket, rows=answers.data_rows)
    warnings = _advice_warnings(answers, method_leaf, regime_leaf, regime)
    fit = None
    if answers.model is not None and answers.device_memory_bytes:
        regime, fields, reasons, fit = _fitted(answers, method, regime, bucket, fields, reasons, warnings)
    return Advice(
        method=method, regime=regime, path=path,
        runner_up=RunnerUp(alt, supported_regime(alt, regime), method_leaf.runner_up_why),
        regime_runner_up=(supported_regime(method, regime_leaf.runner_up), regime_leaf.runner_up_why),
        warnings=warnings, recipe=fields, size_bucket=bucket, reasons=reasons,
        fit=fit.to_dict() if fit is not None else None,
    )


# leaner regimes to try, in order, when the pick's own fallbacks leave it too big
LEANER = {"full": ("freeze", "lora", "qlora"), "freeze": ("lora", "qlora"), "dora": ("lora", "qlora"),
          "lora": ("qlora",), "prompt": ("lora", "qlora"), "prefix": ("lora", "qlora"), "ia3": ("lora", "qlora")}


def _fitted(a: Answers, method: str, regime: str, bucket: str, fields: dict, reasons: dict,
            warnings: list[AdviceWarning]):
    """The pick checked against the device: its own fallbacks first (checkpointing, 8-bit
    AdamW, smaller micro-batch), then a leaner regime the method supports; where nothing
    fits, an error naming the device (or offloaded run) that would."""
    from studio.advisor.fit import device_that_fits, offload_need, plan_fit

    fit = plan_fit(a, method, regime, fields)
    tried = [fit]
    warnings[:] = [w for w in warnings if w.code != "does_not_fit"]  # the rule-of-thumb verdict: replaced below
    # a new model has nothing pretrained to freeze or adapt: only its own fallbacks apply
    leaner_regimes = () if a.from_scratch else LEANER.get(regime, ())
    for leaner in [r for r in leaner_regimes if r in REGISTRY[method].regimes]:
        if fit.fits:
            break
        leaner_fields, leaner_reasons = recipe_with_reasons(method, leaner, bucket, rows=a.data_rows)
        candidate = plan_fit(a, method, leaner, leaner_fields)
        tried.append(candidate)
        if candidate.fits:
            warnings.append(AdviceWarning(
                "regime_for_memory", f"{regime} does not fit ({fit.share()} even with {', '.join(fit.fallbacks) or 'its defaults'}); "
                f"{leaner} does ({candidate.share()}).", f"Train with {leaner}, or use a device with more memory.",
                level="info"))
            regime, fields, reasons, fit = leaner, leaner_fields, leaner_reasons, candidate
    if not fit.fits:
        fit = min(tried, key=lambda f: f.need)
        regime, fields, reasons = fit.regime, *recipe_with_reasons(method, fit.regime, bucket, rows=a.data_rows)
        offload = offload_need(fit)
        warnings.append(AdviceWarning(
            "nothing_fits", f"Nothing fits: the leanest plan ({fit.regime}, {', '.join(fit.fallbacks) or 'as set'}) "
            f"needs {fit.share()}, over the {HEADROOM:.0%} planning limit.",
            f"Plan for {device_that_fits(fit.need)}; or with optimizer and gradients offloaded to CPU RAM "
            f"it would need {gib(offload, 1)} ({OFFLOAD_NOTE}); or a smaller model or shorter rows.",
            level="error"))
    fields = dict(fields)
    fields.update({"train.batch_size": fit.batch_size, "train.grad_accum": fit.grad_accum,
                   "train.gradient_checkpointing": "on" if fit.gradient_checkpointing else "off",
                   "train.optimizer": fit.optimizer})
    reasons = dict(reasons)
    split = (f"micro-batch {fit.batch_size} x {fit.grad_accum} accumulation: the estimate's peak "
             f"{fit.share()}" + (f" after {', '.join(fit.fallbacks)}" if fit.fallbacks else ""))
    reasons["train.batch_size"] = f"{reasons.get('train.batch_size', '')}; {split}".lstrip("; ")
    reasons["train.grad_accum"] = reasons["train.batch_size"]
    reasons["train.gradient_checkpointing"] = ("on: without it the step does not fit" if fit.gradient_checkpointing
                                               else "off: the step fits without recomputing (30% faster)")
    reasons["train.optimizer"] = ("8-bit AdamW: its states take a quarter of the memory, needed to fit"
                                  if fit.optimizer == "adamw_8bit" else f"{fit.optimizer}: fits as it is")
    return regime, fields, reasons, fit


# Online RL with a rule-based reward (checkable answers, no reward model): the shipped
# extraction task is that path end to end (data, SFT start, GRPO, rewards, playground).
WORKED_EXAMPLE = AdviceWarning(
    "worked_example", "A worked example of this path ships with the studio: short travel requests turned into "
    "a JSON object (assets/data/extract_prompts_train.jsonl, each prompt with its reference answer). The recipe "
    "extract-json-sft teaches a small model the format; extract-json-grpo starts from that run "
    "(run:extract-json-sft) and rewards json_valid (the reply is a JSON object) plus json_match (the share of the "
    "reference's fields it gets right).",
    "Train extract-json-sft, try its rewards on that model's own samples (python -m studio reward try "
    "--reward 'json_valid, json_match' --run extract-json-sft, or 'Try the reward' on the Method tab), then "
    "train extract-json-grpo; `python -m studio reward list` shows the other rewards to write yours from.",
    level="info")


def _advice_warnings(a: Answers, method_leaf: Node, regime_leaf: Node, regime: str) -> list[AdviceWarning]:
    method = method_leaf.value
    info = REGISTRY[method]
    reward = None
    if info.family == "online-rl":
        reward = "model:" if a.has_reward_model else ("" if a.checkable is False else "exact_match")
    out = check_choice(method, a.data_kind, reward)
    if info.family == "online-rl" and not a.has_reward_model and a.checkable is not False:
        out.append(WORKED_EXAMPLE)  # a reward written by rule: the shipped task shows one end to end
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
            "does_not_fit", f"The run needs about {gib(need, 1)} but the device has {gib(budget.device, 1)}.",
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
