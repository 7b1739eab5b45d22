"""Model tab: an architecture from scratch, or an existing model, with its size."""
from __future__ import annotations

import gradio as gr

from studio.ui import form

ARCH = ["model.positional_encoding", "model.attention", "model.norm", "model.activation"]
SIZE = ["model.d_model", "model.n_heads", "model.n_kv_heads", "model.d_ff", "model.n_layers",
        "model.vocab_size", "model.max_seq_len"]
ADVANCED = ["model.dropout", "model.sliding_window", "model.attention_bias", "model.norm_eps",
            "model.tie_embeddings", "model.rope_theta", "model.yarn_factor"]
SOURCE = ["model.source", "model.name_or_path", "model.tokenizer", "model.trust_remote_code"]
PATHS = SOURCE + ARCH + SIZE + ADVANCED


def build(spec) -> dict:
    with gr.Row():
        fields = form.widgets(spec, SOURCE[:1])
        fields.update(form.widgets(spec, SOURCE[1:3]))
    with gr.Accordion("Architecture (from scratch)", open=True):
        with gr.Row():
            fields.update(form.widgets(spec, ARCH))
        with gr.Row():
            fields.update(form.widgets(spec, SIZE))
        with gr.Accordion("Advanced", open=False):
            with gr.Row():
                fields.update(form.widgets(spec, ADVANCED + SOURCE[3:]))
    return fields
