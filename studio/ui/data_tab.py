"""Data tab: sources with weights, how they are mixed."""
from __future__ import annotations

import gradio as gr

from studio.ui import form

PATHS = ["data.sources", "data.mixing", "data.stopping_strategy", "data.seed", "data.eval_fraction",
         "data.max_rows", "data.packing", "data.assistant_only_loss"]


def build(spec) -> dict:
    fields = form.widgets(spec, PATHS[:1])
    with gr.Row():
        fields.update(form.widgets(spec, PATHS[1:]))
    return fields
