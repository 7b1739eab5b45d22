"""The method-selection advisor: the seed's flowchart as data, walked by pure functions.

Two trees. The method tree starts at the goal and ends at a registry method; the
regime tree then picks which weights train (full / freeze / LoRA / DoRA / QLoRA /
prompt-style) from the memory the run needs against the device's. Every question node
has a decide function that answers it from `Answers` and says why, so the path through
the chart is also the explanation. No UI code and no torch here: the Method tab, the
CLI and the tests call the same functions.

    answers    Answers (what may be known), the questions the Method tab asks
    chart      the two trees as data (Node, NODE_LIST, children, child)
    decide     one function per question, and the memory Budget they weigh
    advice     walk(Answers) -> path; advise(Answers) -> Advice: method, regime, path
               with reasons, runner-up, warnings with fixes, recipe of spec fields
    checks     check_choice(method, kind, reward): a chosen method against the data
    recipe     the one recipe table (presets/recipes/sizes.yaml): steps from rows x epochs, a reason
               per number; apply_recipe = "use this"
    fit        the pick against the device: the estimate with checkpointing, 8-bit AdamW and
               accumulation as fallbacks, a leaner regime, or the device that would fit
    lengths    the data's real sequence length (p95 of the blend's token lengths)
    inputs     infer_answers(spec, ...): what the studio can answer itself
    flowchart  the chart as SVG with the path highlighted
    cli        `studio advise`

The names below are the package's public surface; import them from here.
"""
from __future__ import annotations

from studio.advisor.advice import (
    REGIME_FALLBACK, Advice, RunnerUp, Step, advise, supported_regime, walk)
from studio.advisor.answers import DATA_KINDS, GOALS, REGIME_NAMES, WANTS, Answers, Question, questions
from studio.advisor.chart import NODE_LIST, NODES, ROOTS, Node, child, children, method_table, short_name
from studio.advisor.checks import METHOD_FOR_KIND, AdviceWarning, check_choice
from studio.advisor.decide import (
    DECIDE, DECIDE_REGIME, DORA_ROOM, HEADROOM, PROMPT_TUNING_MIN_PARAMS, REFERENCE_BYTES_PER_PARAM,
    TINY_DATA_ROWS, Budget, rough_memory)
from studio.advisor.inputs import (
    detect_data_kind, guess_model_is_base, infer_answers, kind_of_sources, params_from_name, resolve_model,
    sample_rows)
from studio.advisor.recipe import (
    SIZES_FILE, apply_recipe, effective_batch_for, epochs_for, load_sizes, recipe, recipe_with_reasons, size_bucket)
from studio.advisor.fit import Fit, device_that_fits, fit_regime
from studio.hardware import detect_device_memory
from studio.methods import REGISTRY
from studio.units import GIB

__all__ = [
    "DATA_KINDS", "DECIDE", "DECIDE_REGIME", "DORA_ROOM", "GIB", "GOALS", "HEADROOM", "METHOD_FOR_KIND",
    "NODES", "NODE_LIST", "PROMPT_TUNING_MIN_PARAMS", "REFERENCE_BYTES_PER_PARAM", "REGIME_FALLBACK",
    "REGIME_NAMES", "REGISTRY", "ROOTS", "SIZES_FILE", "TINY_DATA_ROWS", "WANTS", "Advice", "AdviceWarning",
    "Answers", "Budget", "Node", "Question", "RunnerUp", "Step", "advise", "apply_recipe", "check_choice",
    "child", "children", "detect_data_kind", "detect_device_memory", "guess_model_is_base", "infer_answers",
    "kind_of_sources", "load_sizes", "recipe_with_reasons", "epochs_for", "effective_batch_for", "Fit",
    "device_that_fits", "fit_regime", "method_table", "params_from_name", "questions", "recipe",
    "resolve_model", "rough_memory", "sample_rows", "short_name", "size_bucket", "supported_regime", "walk",
]
