"""Widgets <-> RunSpec fields. Every form control is created here from a dataclass field
(its type, its allowed values), keyed by its spec path ("model.d_model"), so a form can
never drift from the spec, and reading a form back is one `spec_from_values` call."""
from __future__ import annotations

import dataclasses
import typing

import gradio as gr

from studio import spec as S
from studio.methods import REGISTRY
from studio.rewards import PRESETS as REWARD_PRESETS

CHOICES: dict[str, tuple] = {
    "model.source": S.MODEL_SOURCES,
    "model.positional_encoding": S.POSITIONAL_ENCODINGS,
    "model.attention": S.ATTENTIONS,
    "model.norm": S.NORMS,
    "model.activation": S.ACTIVATIONS,
    "data.mixing": S.MIXINGS,
    "data.stopping_strategy": S.STOPPING,
    "method.name": tuple(REGISTRY),
    "method.regime": S.REGIMES,
    "method.quant_type": ("nf4", "fp4"),
    "method.compute_dtype": ("auto", "fp32", "bf16", "fp16"),
    "method.lora_init": S.LORA_INITS,
    "method.reward": tuple(REWARD_PRESETS),
    "train.optimizer": S.OPTIMIZERS,
    "train.scheduler": S.SCHEDULERS,
    "train.precision": S.PRECISIONS,
    "train.gradient_checkpointing": S.CHECKPOINTING,
    "train.report_to": S.REPORT_TO,
    "train.distributed": S.DISTRIBUTED,
    "train.attn_implementation": S.ATTN_IMPLEMENTATIONS,
    "train.torch_compile": S.COMPILE,
    "train.on_divergence": ("stop", "rollback"),
    "train.federation.strategy": ("fedavg", "fedprox"),
}
# Fields where the person may also type a value outside the list.
CUSTOM_VALUES = {"method.reward"}
SOURCES_PATH = "data.sources"
# Fields whose grammar or rule of thumb the label cannot show.
FIELD_INFO = {
    SOURCES_PATH: "One source per line: `path or hub name | subset | weight` (subset and weight optional).",
    "method.loss_type": "DPO: sigmoid, ipo, hinge, ... (comma-separated to mix). KTO: kto or apo_zero_unpaired. "
                        "Add 'sft' (e.g. 'sigmoid, sft' or 'simpo, sft') to also train on the chosen answers.",
    "method.desirable_weight": "KTO: weight of the thumbs-up rows' loss. The KTO paper keeps it 1-1.33 "
                               "for as many up as down rows; 2 taught the shipped sums best.",
    "method.reward": "A preset, or model:<reward run dir>; several are summed with commas, e.g. "
                     "'exact_match, closeness'.",
    "train.eval_tasks": "Prompt files (jsonl with prompt/answer), comma-separated: scored by exact match at each "
                        "eval (or checkpoint) and charted as heldout/<file>/exact_match.",
    "train.on_divergence": "NaN/inf loss: stop (the run fails, naming the step) or rollback to the last good "
                           "state with half the learning rate.",
    "train.max_rollbacks": "rollback: at most this many (1-20), then the run stops.",
    "train.attn_implementation": "auto = sdpa; flash_attention_2 and kernels need a CUDA GPU.",
    "train.use_liger_kernel": "Fused kernels (CUDA GPU, transformers' model families).",
    "train.padding_free": "SFT: rows flattened into one sequence, no padding.",
    "train.torch_compile": "auto: on for GPU runs long enough to repay the compile.",
}


def _hint(path: str):
    """The type of a spec field; nested sections (train.federation.rounds) are walked."""
    tp = S.RunSpec
    for part in path.split("."):
        tp = typing.get_type_hints(tp)[part]
    return tp


def _get(spec: S.RunSpec, path: str):
    node = spec
    for part in path.split("."):
        node = getattr(node, part)
    return node


def elem_id(path: str) -> str:
    return path.replace(".", "-").replace("_", "-")


def widget(path: str, value, label: str | None = None, info: str | None = None, **kw):
    # a nested field (train.federation.rounds) sits under its group's heading: its own name
    label = label or path.split(".")[-1 if path.count(".") > 1 else 1].replace("_", " ")
    common = dict(label=label, elem_id=elem_id(path), info=info or FIELD_INFO.get(path), **kw)
    if path == SOURCES_PATH:
        return gr.Textbox(value=sources_to_text(value), lines=4, **common)
    if path in CHOICES:
        return gr.Dropdown(choices=list(CHOICES[path]), value=value,
                           allow_custom_value=path in CUSTOM_VALUES, **common)
    tp = _hint(path)
    optional = typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType"))
    base = [a for a in typing.get_args(tp) if a is not type(None)][0] if optional else tp
    if base is bool:
        return gr.Checkbox(value=value, **common)
    if base in (int, float):
        if optional and not info:
            # the browser sends 0 for an emptied number box, so 0 means "not set" here
            common["info"] = "0 or empty = not set"
        return gr.Number(value=value, precision=0 if base is int else None, **common)
    return gr.Textbox(value=value, **common)


def widgets(spec: S.RunSpec, paths: list[str], **kw) -> dict[str, gr.components.Component]:
    return {p: widget(p, _get(spec, p), **kw) for p in paths}


def sources_to_text(sources: list[S.DataSource]) -> str:
    from studio.data.sources import format_source_lines

    return format_source_lines(sources)


def text_to_sources(text: str) -> list[dict]:
    from studio.data import parse_source_lines

    return [dataclasses.asdict(s) for s in parse_source_lines(text or "")]


def spec_from_values(paths: list[str], values: list, base: S.RunSpec | None = None) -> S.RunSpec:
    """The spec the form describes. Raises SpecError naming the field on unreadable input."""
    data = (base or S.RunSpec()).to_dict()
    for path, value in zip(paths, values):
        if path == SOURCES_PATH:
            try:
                value = text_to_sources(value)
            except ValueError as exc:
                raise S.SpecError(SOURCES_PATH, str(exc)) from None
        elif isinstance(value, float) and value.is_integer() and _hint(path) is int:
            value = int(value)
        elif value in ("", 0, None) and typing.get_origin(_hint(path)) is not None:
            value = None  # an emptied optional number (sent as 0) means "not set"
        S.set_path(data, path, value)
    return S.RunSpec.from_dict(data)


def updates_for(spec: S.RunSpec, paths: list[str]) -> list:
    """gr.update values that put `spec` into the widgets of `paths` (e.g. after a preset)."""
    out = []
    for p in paths:
        v = _get(spec, p)
        out.append(gr.update(value=sources_to_text(v) if p == SOURCES_PATH else v))
    return out


TABS = {"model": "Model", "data": "Data", "method": "Method", "train": "Train", "name": "Train"}


def tab_of(field: str) -> str:
    """The tab a spec field is edited on, so a refusal says where to go."""
    return TABS.get((field or "").split(".", 1)[0], "Train")


def problems_markdown(problems) -> str:
    if not problems:
        return "✅ The spec is valid."
    return "**Fix before starting:**\n" + "\n".join(f"- **{tab_of(p.field)} tab** · `{p.field}`: {p.message}"
                                                     for p in problems)
