"""Model tab: an architecture from scratch, or an existing model, with what it costs.

The estimate (architecture, exact parameter counts, context, memory, FLOPs, time) is
redrawn on every edit from studio.estimate, which is pure arithmetic: no torch,
transformers or weights in this process. An existing model comes from a preset of a
published model (its architecture facts ship in presets/, so no download at all) or a
typed hub id, whose config.json alone studio.hub fetches (kilobytes). Only training a
tokenizer loads `tokenizers`/`transformers`, inside its own handler.

Contract (as the other tabs): `build(spec, settings) -> widgets` (widgets["fields"]: the
spec fields it owns) and `wire(demo, widgets, fields, settings)` once every tab exists.
What the tab shows is rendered by studio.ui.model_view.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import estimate as E
from studio import hub, policy
from studio.estimate.rope import ROPE_SCALINGS
from studio.hardware import DEFAULT_GPU, GPUS, detected_gpu, peak_tflops  # noqa: F401 - public here
from studio.presets import list_presets, load_model_preset, model_presets
from studio.spec import RunSpec, SpecError
from studio.ui import form
from studio.ui.model_view import (  # noqa: F401 - public names of this module before the split
    ARCH_NAMES, PART_COLOURS, component_rows, compute, context_markdown, count_label, cpu_label, gpu_choices, human_count,
    human_time, memory_figure, problems_for_model, summary_markdown, verdict_markdown)

ARCH = ["model.positional_encoding", "model.attention", "model.norm", "model.activation"]
SIZE = ["model.d_model", "model.n_heads", "model.n_kv_heads", "model.d_ff", "model.n_layers",
        "model.vocab_size", "model.max_seq_len"]
ADVANCED = ["model.dropout", "model.sliding_window", "model.attention_bias", "model.norm_eps",
            "model.tie_embeddings", "model.rope_theta", "model.yarn_factor"]
SOURCE = ["model.source", "model.name_or_path", "model.tokenizer", "model.trust_remote_code"]
# an existing model trained past its native context (#25.7)
ROPE = ["model.rope_scaling", "model.rope_factor", "model.rope_original_context"]
PATHS = SOURCE + ARCH + SIZE + ADVANCED + ROPE
# Fields of the other tabs the estimate depends on (regime and adapter shape, batch, dtype...).
COST_PATHS = ["method.regime", "method.lora_r", "method.target_modules", "method.freeze_trainable_layers",
              "method.freeze_extra_modules", "method.num_virtual_tokens", "method.double_quant",
              "train.batch_size", "train.optimizer", "train.precision", "train.gradient_checkpointing"]

CUSTOM_GPU = "Custom"
TOKENIZER_ROWS = 20_000  # enough text for a small BPE; keeps training to seconds
HUB_FIELD = "model.name_or_path"
HUB_INFO = ("pretrained: a local folder, run:<name>, or a hub id org/name[@revision]; "
            "Enter fetches the hub model's config.json alone (kilobytes) for the estimate")
ROPE_INFO = {"model.rope_scaling": "an existing model trained past its native context; empty: as published",
             "model.rope_factor": "context multiple, e.g. 2 trains at twice the native context",
             "model.rope_original_context": "native context; 0 or empty: the config's max_position_embeddings"}
FIX_FIELD = "*Fix the marked field to see the estimate.*"


def elem(name: str) -> str:
    return "model-" + name.replace("_", "-")


# -- presets ----------------------------------------------------------------------------------


def hub_preset_choices() -> list[tuple[str, str]]:
    """(label, preset id) of the published models: the title and published size, so the
    list reads as what people fine-tune."""
    return [(f"{p['title']} · {p['params'] / 1e9:.2f}B" if p["params"] else p["title"], p["id"])
            for p in model_presets()]


def scratch_presets() -> list[str]:
    """The studio's own architectures (llama-100m, tiny ...): presets without a config."""
    published = {p["id"] for p in model_presets()}
    return [name for name in list_presets("models") if name not in published]


def preset_updates(name: str | None) -> list:
    """Updates for PATHS from a model preset; a published model's preset fills the hub id
    and source: pretrained, and its estimate reads the preset's config (no download)."""
    if not name:
        return [gr.update()] * len(PATHS)
    try:
        filled = RunSpec(model=load_model_preset(name))
    except (FileNotFoundError, ValueError) as exc:
        gr.Warning(str(exc))
        return [gr.update()] * len(PATHS)
    return form.updates_for(filled, PATHS)


# -- a typed hub id ---------------------------------------------------------------------------


def check_hub_id(source: str, text: str) -> dict:
    """What the name_or_path box holds, fetched: {"text", "error"}. A hub id whose config
    cannot be read here (cache, a preset's, a folder) gets its config.json alone through
    studio.hub.fetch_config; offline and not cached, or unknown, `error` is the HubError's
    message, which the estimate then shows on the field until the text changes."""
    text = (text or "").strip()
    state = {"text": text, "error": None}
    if source != "pretrained" or not text or text.startswith("run:") or not hub.looks_like_id(text) \
            or policy.local_folder(text) is not None:
        return state
    try:
        E.read_config(text)  # already readable: nothing to fetch
        return state
    except E.EstimateError:
        pass
    try:
        hub.fetch_config(text, field=HUB_FIELD)
    except hub.HubError as exc:
        state["error"] = exc.message
    return state


def hub_problems(state: dict | None, spec) -> list[tuple[str, str]]:
    """The fetch's error while the box still holds the text that failed."""
    if not state or not state.get("error") or spec.model.source != "pretrained":
        return []
    return [(HUB_FIELD, state["error"])] if spec.model.name_or_path.strip() == state["text"] else []


# -- the live estimate ------------------------------------------------------------------------


def estimate_view(paths: list[str], values, hub_state: dict | None, settings, knobs) -> tuple | None:
    """(shown, problems) for one form state: shown = (summary, problems text, figure, rows,
    verdict), problems = [(field, message)] to put on the model fields. None when the
    form is mid-edit (an unreadable number): the view stays as it is."""
    try:
        spec = form.spec_from_values(paths, values)
    except SpecError as exc:
        return (FIX_FIELD, f"⚠ `{exc.field}`: {exc.fix}", None, [], ""), [(exc.field, exc.fix)]
    except (ValueError, TypeError):
        return None
    # a folder this server may not read is not opened for its config either
    refused = [(p.field, p.message) for p in policy.problems(spec, settings) if p.field.startswith("model.")]
    refused += hub_problems(hub_state, spec)
    problems = [(p.field, p.message) for p in spec.validate() if p.field.startswith("model.")] + refused
    if refused:
        return (FIX_FIELD, f"⚠ `{refused[0][0]}`: {refused[0][1]}", None, [], ""), problems
    gpu, device_gb, tflops, util, tokens = knobs
    return compute(spec, device_gb or None, gpu or "", tflops or 0, util or 0, tokens or 0), problems


def field_updates(problems, flagged, paths: list[str], infos: list) -> tuple[list[str], list]:
    """(fields now flagged, an update per path): a problem's message goes into its field's
    info line, next to the box; a field no longer flagged gets its own info back."""
    messages: dict[str, str] = {}
    for field, message in problems:
        messages.setdefault(field, message)
    updates = []
    for path, info in zip(paths, infos):
        if path in messages:
            updates.append(gr.update(info=f"⚠ {messages[path]}"))
        elif path in flagged:
            updates.append(gr.update(info=info or ""))  # None would mean 'unchanged'
        else:
            updates.append(gr.update())
    return sorted(messages), updates


# -- tokenizer ------------------------------------------------------------------------------


def source_texts(sources_text: str, limit: int = TOKENIZER_ROWS) -> list[str]:
    from studio.tokenizer import source_texts as texts

    return texts(sources_text, limit)


def tokenizer_dir(runs_dir, name: str) -> Path:
    from studio.tokenizer import tokenizer_dir as folder

    return folder(runs_dir, name)


def train_new_tokenizer(sources_text: str, vocab_size, name: str, runs_dir) -> tuple[str, str]:
    """(folder, message); studio.tokenizer.train_from_sources does the work."""
    from studio.tokenizer import train_from_sources

    return train_from_sources(sources_text, vocab_size, name, runs_dir)


# -- layout ---------------------------------------------------------------------------------


def _cpu_speed(settings) -> dict:
    from studio import cpu_speed

    return cpu_speed.this_cpu(getattr(settings, "runs_dir", None))


def _source_rows(spec, w: dict) -> dict:
    with gr.Row():
        w["preset"] = gr.Dropdown(choices=scratch_presets(), value=None, label="Architecture preset (from scratch)",
                                  elem_id=elem("preset"), interactive=True, scale=1)
        w["hub_preset"] = gr.Dropdown(choices=hub_preset_choices(), value=None, elem_id=elem("hub_preset"),
                                      label="Existing model (fills the hub id; size without a download)",
                                      interactive=True, scale=1)
    with gr.Row():
        fields = form.widgets(spec, SOURCE[:1])
        fields[HUB_FIELD] = form.widget(HUB_FIELD, spec.model.name_or_path, info=HUB_INFO)
        fields.update(form.widgets(spec, SOURCE[2:3]))
    return fields


def _tokenizer_box(w: dict) -> None:
    with gr.Accordion("Train a new tokenizer (byte-level BPE on the Data tab's sources)", open=False):
        with gr.Row():
            w["tok_name"] = gr.Textbox("my-bpe", label="name", elem_id=elem("tok_name"),
                                       info="saved under runs/tokenizers/<name>")
            w["tok_vocab"] = gr.Number(4096, precision=0, label="vocab size", elem_id=elem("tok_vocab"))
            w["tok_train"] = gr.Button("Train tokenizer", elem_id=elem("tok_train"), scale=0)
        w["tok_message"] = gr.Markdown("", elem_id=elem("tok_message"))


def _architecture(spec, w: dict, fields: dict) -> None:
    with gr.Accordion("Architecture (from scratch)", open=True):
        with gr.Row():
            fields.update(form.widgets(spec, ARCH))
        with gr.Row():
            fields.update(form.widgets(spec, SIZE))
        w["problems"] = gr.Markdown("", elem_id=elem("problems"), elem_classes=["run-error"], visible=False)
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                fields.update(form.widgets(spec, ADVANCED + SOURCE[3:]))
    with gr.Accordion("Long context (an existing model trained past its native context)", open=False):
        with gr.Row():
            m = spec.model
            # a dropdown of the kinds (form makes a free Textbox of an optional str)
            fields["model.rope_scaling"] = gr.Dropdown(
                choices=[("none", "")] + [(k, k) for k in ROPE_SCALINGS], value=m.rope_scaling or "",
                label="rope scaling", elem_id=form.elem_id("model.rope_scaling"), info=ROPE_INFO["model.rope_scaling"])
            for path in ROPE[1:]:
                fields[path] = form.widget(path, getattr(m, path.split(".", 1)[1]), info=ROPE_INFO[path])


def _estimate_box(w: dict, settings) -> None:
    with gr.Accordion("Size, memory and time", open=True):
        w["summary"] = gr.Markdown("", elem_id=elem("summary"))
        found = detected_gpu()
        cpu = None if found else _cpu_speed(settings)
        w["gpus"] = gpus = gpu_choices(found, cpu)  # plain data, for wire()
        first = found[0] if found else cpu_label(cpu)
        with gr.Row():
            w["gpu"] = gr.Dropdown(choices=list(gpus) + [CUSTOM_GPU], value=first, label="GPU", elem_id=elem("gpu"),
                                   info="detected with nvidia-smi" if found else "no GPU here: this CPU's measured speed")
            w["device_gb"] = gr.Number(gpus[first][0], label="device memory (GB)", elem_id=elem("device_gb"))
            w["tflops"] = gr.Number(gpus[first][1], label="peak TFLOPS (bf16)", elem_id=elem("tflops"))
            # a run's measured speed already includes utilisation: 1.0 then
            w["util"] = gr.Slider(0.05, 1.0, value=cpu["utilisation"] if cpu else 0.4, step=0.05,
                                  label="utilisation (MFU)", elem_id=elem("util"))
            w["tokens"] = gr.Number(1e9, label="tokens to train", elem_id=elem("tokens"))
        w["memory_bar"] = gr.Plot(elem_id=elem("memory_bar"), label="Memory", show_label=False)
        w["verdict"] = gr.Markdown("", elem_id=elem("verdict"))
        w["components"] = gr.Dataframe(headers=["component", "parameters", "share"], value=[], interactive=False,
                                       elem_id=elem("components"), label="Parameters per component")


def build(spec, settings=None) -> dict:
    """The tab's widgets by name; widgets["fields"]: its spec fields by path."""
    w: dict = {}
    fields = _source_rows(spec, w)
    _tokenizer_box(w)
    _architecture(spec, w, fields)
    _estimate_box(w, settings)
    w["fields"] = fields
    return w


# -- events -----------------------------------------------------------------------------------


def _wire_estimate(demo: gr.Blocks, w: dict, fields: dict, settings) -> dict:
    """Live estimate from every tab's fields; returns the event's arguments, which a
    fetched hub config re-runs."""
    paths, comps = list(fields), list(fields.values())
    mine = [p for p in PATHS if p in fields]
    model_widgets = [fields[p] for p in mine]
    infos = [c.info for c in model_widgets]
    knobs = [w[n] for n in ("gpu", "device_gb", "tflops", "util", "tokens")]
    outputs = [w[n] for n in ("summary", "problems", "memory_bar", "components", "verdict")]

    def on_edit(flagged, hub_state, *values):
        view = estimate_view(paths, values[len(knobs):], hub_state, settings, values[:len(knobs)])
        if view is None:
            return (*[gr.update()] * len(outputs), flagged, *[gr.update()] * len(model_widgets))
        (summary, problems_text, *rest), problems = view
        now_flagged, updates = field_updates(problems, flagged, mine, infos)
        # an empty Markdown still takes a line's height: hide it when all is well
        return (summary, gr.update(value=problems_text, visible=bool(problems_text)), *rest, now_flagged,
                *updates)

    w["flagged"], w["hub_state"] = gr.State([]), gr.State({})
    run = dict(fn=on_edit, inputs=[w["flagged"], w["hub_state"]] + knobs + comps,
               outputs=outputs + [w["flagged"]] + model_widgets, show_progress="hidden",
               api_visibility="private", concurrency_id="model-estimate", concurrency_limit=4)
    triggers = [fields[p] for p in PATHS + COST_PATHS if p in fields] + knobs[1:]
    gr.on([c.change for c in triggers] + [demo.load], trigger_mode="always_last", **run)
    return run


def _wire_sources(w: dict, fields: dict, rerun: dict) -> None:
    """The GPU picker fills its numbers; presets fill the fields; a typed hub id (Enter
    or leaving the box) fetches its config.json, then the estimate runs again."""
    gpus = w["gpus"]
    w["gpu"].change(lambda choice: gpus.get(choice, (gr.update(), gr.update())), w["gpu"],
                    [w["device_gb"], w["tflops"]], api_visibility="private", show_progress="hidden")
    for picker in (w["preset"], w["hub_preset"]):
        picker.change(preset_updates, [picker], [fields[p] for p in PATHS], api_visibility="private",
                      show_progress="hidden")
    name, source = fields[HUB_FIELD], fields["model.source"]
    gr.on([name.submit, name.blur], check_hub_id, [source, name], w["hub_state"], api_visibility="private",
          show_progress="minimal", concurrency_id="model-hub", concurrency_limit=2).then(**rerun)


def _wire_tokenizer(w: dict, fields: dict, settings) -> None:
    def on_train_tokenizer(sources_text, vocab, name):
        try:
            folder, message = train_new_tokenizer(sources_text, vocab, name, settings.runs_dir)
        except SpecError as exc:
            return gr.update(), gr.update(), f"**Cannot train:** `{exc.field}`: {exc.fix}"
        except Exception as exc:  # noqa: BLE001 - data errors of many kinds; the message names the field
            return gr.update(), gr.update(), f"**Cannot train:** {exc}"
        # vocab_size left empty follows the new tokenizer
        return folder, None, message

    if "data.sources" in fields:
        w["tok_train"].click(on_train_tokenizer, [fields["data.sources"], w["tok_vocab"], w["tok_name"]],
                             [fields["model.tokenizer"], fields["model.vocab_size"], w["tok_message"]],
                             api_visibility="private", concurrency_limit=1)


def wire(demo: gr.Blocks, widgets: dict, fields: dict, settings) -> None:
    """The tab's events; `fields` holds every tab's spec fields (the estimate reads the
    method's and training's too)."""
    rerun = _wire_estimate(demo, widgets, fields, settings)
    _wire_sources(widgets, fields, rerun)
    _wire_tokenizer(widgets, fields, settings)
