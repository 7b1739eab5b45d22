"""Method tab: the method, its parameter regime and its knobs."""
from __future__ import annotations

import gradio as gr

from studio.ui import form

MAIN = ["method.name", "method.regime"]
ADAPTER = ["method.lora_r", "method.lora_alpha", "method.lora_dropout", "method.target_modules",
           "method.freeze_trainable_layers", "method.freeze_extra_modules", "method.num_virtual_tokens",
           "method.quant_type", "method.double_quant", "method.compute_dtype"]
PREFERENCE = ["method.beta", "method.loss_type", "method.simpo_gamma", "method.reference_model"]
ONLINE = ["method.reward", "method.group_size", "method.temperature", "method.top_k", "method.top_p",
          "method.max_new_tokens", "method.ppo_epochs", "method.clip_range", "method.vf_coef",
          "method.gamma", "method.gae_lambda", "method.kl_coef", "method.mini_batch_size"]
DISTILL = ["method.teacher", "method.distill_temperature", "method.distill_alpha"]
PATHS = MAIN + ADAPTER + PREFERENCE + ONLINE + DISTILL


def build(spec) -> dict:
    with gr.Row():
        fields = form.widgets(spec, MAIN)
    with gr.Accordion("Parameter regime (adapters, freezing, quantisation)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, ADAPTER))
    with gr.Accordion("Preference methods (DPO, ORPO, SimPO, KTO)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, PREFERENCE))
    with gr.Accordion("Online RL (GRPO, PPO)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, ONLINE))
    with gr.Accordion("Distillation", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, DISTILL))
    return fields
