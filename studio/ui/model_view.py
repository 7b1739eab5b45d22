"""What the Model tab shows for one form state: the summary (architecture, exact
parameter counts, the context trained for), the memory bar, the fit verdict and time, the
per-component table. Pure rendering of studio.estimate's report; no widgets here, so the
tab (studio.ui.model_tab) only maps widgets to these functions."""
from __future__ import annotations

from studio import estimate as E
from studio.hardware import GPUS
from studio.spec import SpecError
from studio.units import GIB, human_bytes

PART_COLOURS = {"weights": "#4C78A8", "gradients": "#F58518", "optimizer": "#54A24B",
                "activations": "#E45756", "kv_cache": "#B279A2"}


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


def count_label(n: float) -> str:
    """human_count, plus billions for a model between 100M and 1B: model cards name those
    in billions (Qwen2.5-0.5B), so both spellings sit next to the exact count."""
    return f"{human_count(n)} · {n / 1e9:.2f}B" if 1e8 <= n < 1e9 else human_count(n)


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
            f"**Parameters:** <span id='param-total'>{total:,}</span> ({count_label(total)}) · "
            f"**trainable** ({regime}): <span id='param-trainable'>{trainable:,}</span> ({share}) · "
            f"embedding {result['embedding_parameters']:,} · non-embedding {result['non_embedding_parameters']:,}"
            + context_markdown(result.get("context_tokens"), spec))


def context_markdown(context: int | None, spec) -> str:
    """The context the model is trained for; with model.rope_scaling, the scaled one and
    what it was scaled from, so the multiple is visible next to the result."""
    if not context:
        return ""
    m = spec.model
    scaled = ""
    if m.source == "pretrained" and m.rope_scaling and m.rope_factor:
        native = m.rope_original_context or round(context / m.rope_factor)
        scaled = f" ({m.rope_scaling} ×{m.rope_factor:g} of the native {native:,})"
    return f"\n\n**Context:** <span id='context-tokens'>{context:,}</span> tokens{scaled}"


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
        offline = ""
        if spec.model.source == "pretrained":
            offline = (" (the estimate reads configs only: press Enter in name_or_path to fetch a hub "
                       "model's config.json alone, kilobytes)")
        return f"**Cannot estimate:** {exc}{offline}", "", None, [], ""
    return (summary_markdown(result, spec), "", memory_figure(result, device_gb), component_rows(result),
            verdict_markdown(result, device_gb, gpu, tflops, util, tokens))
