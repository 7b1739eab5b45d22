"""Model tab: an architecture from scratch, or an existing model, with what it costs.

The estimate (architecture, exact parameter counts, memory, FLOPs, time) is redrawn on
every edit from studio.estimate, which is pure arithmetic: no torch, transformers or
weights in this process. Only training a tokenizer loads `tokenizers`/`transformers`,
inside its own handler.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import estimate as E
from studio.hardware import DEFAULT_GPU, GPUS, detected_gpu, peak_tflops  # noqa: F401 - peak_tflops: public here
from studio import policy
from studio.presets import list_presets, load_model_preset
from studio.spec import RunSpec, SpecError
from studio.ui import form
from studio.units import GIB, human_bytes

ARCH = ["model.positional_encoding", "model.attention", "model.norm", "model.activation"]
SIZE = ["model.d_model", "model.n_heads", "model.n_kv_heads", "model.d_ff", "model.n_layers",
        "model.vocab_size", "model.max_seq_len"]
ADVANCED = ["model.dropout", "model.sliding_window", "model.attention_bias", "model.norm_eps",
            "model.tie_embeddings", "model.rope_theta", "model.yarn_factor"]
SOURCE = ["model.source", "model.name_or_path", "model.tokenizer", "model.trust_remote_code"]
PATHS = SOURCE + ARCH + SIZE + ADVANCED
# Fields of the other tabs the estimate depends on (regime and adapter shape, batch, dtype...).
COST_PATHS = ["method.regime", "method.lora_r", "method.target_modules", "method.freeze_trainable_layers",
              "method.freeze_extra_modules", "method.num_virtual_tokens", "method.double_quant",
              "train.batch_size", "train.optimizer", "train.precision", "train.gradient_checkpointing"]

CUSTOM_GPU = "Custom"
PART_COLOURS = {"weights": "#4C78A8", "gradients": "#F58518", "optimizer": "#54A24B",
                "activations": "#E45756", "kv_cache": "#B279A2"}
TOKENIZER_ROWS = 20_000  # enough text for a small BPE; keeps training to seconds


def elem(name: str) -> str:
    return "model-" + name.replace("_", "-")


# -- device -------------------------------------------------------------------------------


def gpu_choices(found, cpu: dict | None = None) -> dict[str, tuple[float, float]]:
    """Device name -> (memory GB, TFLOPS). Without a GPU, this CPU comes first with its
    measured speed (studio.cpu_speed), so the estimate speaks of the machine in use."""
    choices = {found[0]: found[1:]} if found else {}
    if not found and cpu:
        from studio.hardware import ram_bytes

        choices[cpu_label(cpu)] = (round((ram_bytes() or 0) / GIB, 1), cpu["flops_per_second"] / 1e12)
    choices.update(GPUS)
    return choices


def cpu_label(cpu: dict) -> str:
    return f"CPU: this machine ({cpu['source']})"


# -- what the tab shows ---------------------------------------------------------------------


def human_count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


ARCH_NAMES = {"llama": "Llama (transformers LlamaForCausalLM)", "mistral": "Mistral (transformers MistralForCausalLM)",
              "studio": "the studio's own decoder (registered with the Auto classes)"}


def summary_markdown(result: dict, spec) -> str:
    arch = result["architecture"]
    name = ARCH_NAMES.get(arch, f"`{arch}` (from its config.json)")
    total, trainable = result["parameters"], result["trainable_parameters"]
    regime = result["settings"]["regime"]
    share = f"{100 * trainable / total:.2f}%" if total else "-"
    vocab = ""
    if spec.model.source == "scratch" and not spec.model.vocab_size:
        vocab = f" Vocabulary follows the tokenizer: {result.get('vocab', '?'):,} tokens."
    return (f"**Architecture:** {name}.{vocab}\n\n"
            f"**Parameters:** <span id='param-total'>{total:,}</span> ({human_count(total)}) · "
            f"**trainable** ({regime}): <span id='param-trainable'>{trainable:,}</span> ({share}) · "
            f"embedding {result['embedding_parameters']:,} · non-embedding {result['non_embedding_parameters']:,}")


def component_rows(result: dict) -> list[list]:
    total = result["parameters"] or 1
    return [[name, f"{count:,}", f"{100 * count / total:.1f}%"]
            for name, count in sorted(result["components"].items(), key=lambda kv: -kv[1])]


def memory_figure(result: dict, device_gb: float | None):
    import plotly.graph_objects as go

    mem = result["memory_bytes"]
    fig = go.Figure()
    rows = ["training step", "inference (KV cache)"]
    for part in ("weights", "gradients", "optimizer", "activations", "kv_cache"):
        value = result["kv_cache_bytes"] if part == "kv_cache" else mem[part]
        x = [0 if part == "kv_cache" else value / GIB,
             value / GIB if part in ("weights", "kv_cache") else 0]
        fig.add_bar(y=rows, x=x, name=part.replace("_", " "), orientation="h", marker_color=PART_COLOURS[part],
                    hovertemplate=f"{part}: %{{x:.3f}} GiB<extra></extra>")
    if device_gb:
        fig.add_vline(x=device_gb, line_dash="dash", line_color="#444",
                      annotation_text=f"device {device_gb:g} GB", annotation_position="top")
    fig.update_layout(barmode="stack", height=240, margin=dict(l=10, r=10, t=30, b=30),
                      xaxis_title="GiB", legend=dict(orientation="h", y=-0.35), yaxis=dict(autorange="reversed"))
    return fig


def verdict_markdown(result: dict, device_gb: float | None, gpu: str, tflops: float, util: float,
                     tokens: float) -> str:
    mem = result["memory_bytes"]
    s = result["settings"]
    lines = [f"Training step ({s['dtype']}, {s['optimizer']}, batch {s['batch_size']} × {s['seq_len']} tokens"
             f"{', gradient checkpointing' if s['gradient_checkpointing'] else ''}): **{human_bytes(mem['total'])}** = "
             + " + ".join(f"{k} {human_bytes(mem[k])}" for k in ("weights", "gradients", "optimizer", "activations"))
             + f". Inference KV cache (same batch and length): {human_bytes(result['kv_cache_bytes'])}."]
    if device_gb:
        capacity = device_gb * GIB
        if mem["total"] <= capacity:
            lines.append(f"**Fits on {device_gb:g} GB** (headroom {human_bytes(capacity - mem['total'])}).")
        else:
            lines.append(f"**Does not fit on {device_gb:g} GB**: needs {human_bytes(mem['total'] - capacity)} more. "
                         "Try LoRA/QLoRA, a smaller batch, gradient checkpointing, or an 8-bit optimizer.")
    fpt = result["flops_per_token"]
    line = f"**{fpt / 1e9:.3g} GFLOPs per training token**"
    if tflops and tokens and 0 < util <= 1:
        t = E.estimate_time(tokens, fpt, tflops, util)
        where = (f"on this CPU ({gpu.split('(', 1)[-1].rstrip(')')}, {tflops * 1e3:.3g} GFLOP/s)" if gpu.startswith("CPU:")
                 else f"on {gpu} ({tflops:g} TFLOPS peak)")
        line += (f"; {where} at {util:.0%} utilisation: "
                 f"about {t['tokens_per_second']:,.0f} tokens/s, so {tokens:,.0f} tokens take **about {human_time(t['seconds'])}**.")
    lines.append(line)
    return "\n\n".join(lines)


def problems_for_model(problems) -> str:
    mine = [p for p in problems if p.field.startswith("model.")]
    if not mine:
        return ""
    return "\n".join(f"⚠ `{p.field}`: {p.message}" for p in mine)


def compute(spec, device_gb: float | None, gpu: str, tflops: float, util: float, tokens: float):
    """(summary, problems, figure, table rows, verdict) for one form state."""
    model_problems = [p for p in spec.validate() if p.field.startswith("model.")]
    if model_problems:
        return ("*Fix the marked architecture fields to see the estimate.*", problems_for_model(model_problems),
                None, [], "")
    dtype = None
    if spec.train.precision == "auto" and not gpu.startswith("CPU"):
        dtype = "bf16"  # the worker trains in bf16 on a GPU that has it (all presets here do)
    try:
        result = E.estimate(spec, device_gb, dtype=dtype)
        result["vocab"] = E.inventory(spec.model).info.get("vocab")
    except (E.EstimateError, SpecError, ValueError, KeyError, ZeroDivisionError) as exc:
        offline = " (the estimate reads configs only and never downloads)" if spec.model.source == "pretrained" else ""
        return f"**Cannot estimate:** {exc}{offline}", "", None, [], ""
    return (summary_markdown(result, spec), "", memory_figure(result, device_gb), component_rows(result),
            verdict_markdown(result, device_gb, gpu, tflops, util, tokens))


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


_CPU: dict[int, dict | None] = {}  # id of a built GPU dropdown -> the CPU speed it offers (for wire())


def _cpu_speed(settings) -> dict:
    from studio import cpu_speed

    return cpu_speed.this_cpu(getattr(settings, "runs_dir", None))


def build(spec, settings=None) -> dict:
    with gr.Row():
        gr.Dropdown(choices=list_presets("models"), value=None, label="Preset (fills the fields)",
                    elem_id=elem("preset"), interactive=True, scale=1)
        fields = form.widgets(spec, SOURCE[:1])
        fields.update(form.widgets(spec, SOURCE[1:3]))
    with gr.Accordion("Train a new tokenizer (byte-level BPE on the Data tab's sources)", open=False):
        with gr.Row():
            gr.Textbox("my-bpe", label="name", elem_id=elem("tok_name"),
                       info="saved under runs/tokenizers/<name>")
            gr.Number(4096, precision=0, label="vocab size", elem_id=elem("tok_vocab"))
            gr.Button("Train tokenizer", elem_id=elem("tok_train"), scale=0)
        gr.Markdown("", elem_id=elem("tok_message"))
    with gr.Accordion("Architecture (from scratch)", open=True):
        with gr.Row():
            fields.update(form.widgets(spec, ARCH))
        with gr.Row():
            fields.update(form.widgets(spec, SIZE))
        gr.Markdown("", elem_id=elem("problems"), elem_classes=["run-error"], visible=False)
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                fields.update(form.widgets(spec, ADVANCED + SOURCE[3:]))
    with gr.Accordion("Size, memory and time", open=True):
        gr.Markdown("", elem_id=elem("summary"))
        found = detected_gpu()
        cpu = None if found else _cpu_speed(settings)
        gpus = gpu_choices(found, cpu)
        first = found[0] if found else cpu_label(cpu)
        with gr.Row():
            picker = gr.Dropdown(choices=list(gpus) + [CUSTOM_GPU], value=first, label="GPU", elem_id=elem("gpu"),
                                 info="detected with nvidia-smi" if found else "no GPU here: this CPU's measured speed")
            _CPU[id(picker)] = cpu
            gr.Number(gpus[first][0], label="device memory (GB)", elem_id=elem("device_gb"))
            gr.Number(gpus[first][1], label="peak TFLOPS (bf16)", elem_id=elem("tflops"))
            # a run's measured speed already includes utilisation: 1.0 then
            gr.Slider(0.05, 1.0, value=cpu["utilisation"] if cpu else 0.4, step=0.05, label="utilisation (MFU)",
                      elem_id=elem("util"))
            gr.Number(1e9, label="tokens to train", elem_id=elem("tokens"))
        gr.Plot(elem_id=elem("memory_bar"), label="Memory", show_label=False)
        gr.Markdown("", elem_id=elem("verdict"))
        gr.Dataframe(headers=["component", "parameters", "share"], value=[], interactive=False,
                     elem_id=elem("components"), label="Parameters per component")
    return fields


def _find(demo: gr.Blocks, elem_id: str):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def wire(demo: gr.Blocks, fields: dict, settings) -> None:
    """Live estimate from every tab's fields; presets and a new tokenizer fill the fields."""
    paths, comps = list(fields), list(fields.values())
    get = {name: _find(demo, elem(name)) for name in (
        "preset", "tok_name", "tok_vocab", "tok_train", "tok_message", "problems", "summary", "gpu",
        "device_gb", "tflops", "util", "tokens", "memory_bar", "verdict", "components")}
    gpus = gpu_choices(detected_gpu(), _CPU.pop(id(get["gpu"]), None))
    knobs = [get[n] for n in ("gpu", "device_gb", "tflops", "util", "tokens")]
    outputs = [get[n] for n in ("summary", "problems", "memory_bar", "components", "verdict")]
    model_widgets = [fields[p] for p in PATHS if p in fields]
    infos = [w.info for w in model_widgets]

    def on_edit(flagged, gpu, device_gb, tflops, util, tokens, *values):
        try:
            spec = form.spec_from_values(paths, values)
        except SpecError as exc:
            problems = [(exc.field, exc.fix)]
            shown = ("*Fix the marked field to see the estimate.*", f"⚠ `{exc.field}`: {exc.fix}",
                     None, [], "")
        except (ValueError, TypeError):
            return (*[gr.update()] * len(outputs), flagged, *[gr.update()] * len(model_widgets))
        else:
            refused = [(p.field, p.message) for p in policy.problems(spec, settings) if p.field.startswith("model.")]
            problems = [(p.field, p.message) for p in spec.validate() if p.field.startswith("model.")] + refused
            # a folder this server may not read is not opened for its config either
            shown = (("*Fix the marked field to see the estimate.*", f"⚠ `{refused[0][0]}`: {refused[0][1]}",
                      None, [], "") if refused else
                     compute(spec, device_gb or None, gpu or "", tflops or 0, util or 0, tokens or 0))
        # the message also goes into the field's own info line, next to the box
        messages = {}
        for field, message in problems:
            messages.setdefault(field, message)
        updates = []
        for path, info in zip([p for p in PATHS if p in fields], infos):
            if path in messages:
                updates.append(gr.update(info=f"⚠ {messages[path]}"))
            elif path in flagged:
                updates.append(gr.update(info=info or ""))  # None would mean 'unchanged'
            else:
                updates.append(gr.update())
        summary, problems_text, *rest = shown
        # an empty Markdown still takes a line's height: hide it when all is well
        return (summary, gr.update(value=problems_text, visible=bool(problems_text)), *rest, sorted(messages),
                *updates)

    flagged = gr.State([])
    triggers = [fields[p] for p in PATHS + COST_PATHS if p in fields] + knobs[1:]
    gr.on([c.change for c in triggers] + [demo.load], on_edit, [flagged] + knobs + comps,
          outputs + [flagged] + model_widgets, trigger_mode="always_last", show_progress="hidden",
          api_visibility="private", concurrency_id="model-estimate", concurrency_limit=4)

    def on_gpu(choice):
        if choice not in gpus:
            return gr.update(), gr.update()
        return gpus[choice]

    get["gpu"].change(on_gpu, get["gpu"], [get["device_gb"], get["tflops"]], api_visibility="private",
                      show_progress="hidden")

    def on_preset(name):
        if not name:
            return [gr.update()] * len(PATHS)
        try:
            filled = RunSpec(model=load_model_preset(name))
        except (FileNotFoundError, ValueError) as exc:
            gr.Warning(str(exc))
            return [gr.update()] * len(PATHS)
        return form.updates_for(filled, PATHS)

    get["preset"].change(on_preset, [get["preset"]], [fields[p] for p in PATHS], api_visibility="private",
                         show_progress="hidden")

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
        get["tok_train"].click(on_train_tokenizer, [fields["data.sources"], get["tok_vocab"], get["tok_name"]],
                               [fields["model.tokenizer"], fields["model.vocab_size"], get["tok_message"]],
                               api_visibility="private", concurrency_limit=1)
