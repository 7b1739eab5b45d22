"""Method tab: the method, its parameter regime and its knobs; the advisor that picks them
(its questions, the flowchart with the path taken, a reason per step, "use this"); a
warning line when the chosen method and the data disagree; the registry's comparison table.

Every decision is studio.advisor's; this module only turns widgets into Answers and
Advice into widgets. Contract (as the other tabs): `build(spec) -> widgets` and
`wire(demo, widgets, fields, settings)` once every tab exists; nothing about one app is
kept at module level."""
# Just over ~400 lines: the advisor's widgets and their wiring for one tab.
from __future__ import annotations

import html

import gradio as gr

from studio import advisor
from studio.advisor import flowchart
from studio.spec import RunSpec, SpecError
from studio.ui import form

MAIN = ["method.name", "method.regime"]
ADAPTER = ["method.lora_r", "method.lora_alpha", "method.lora_dropout", "method.target_modules",
           "method.freeze_trainable_layers", "method.freeze_extra_modules", "method.num_virtual_tokens",
           "method.quant_type", "method.double_quant", "method.compute_dtype", "method.quant_bits",
           "method.use_rslora", "method.lora_init", "method.loraplus_ratio"]
PREFERENCE = ["method.beta", "method.loss_type", "method.simpo_gamma", "method.desirable_weight",
              "method.undesirable_weight", "method.reference_model"]
ONLINE = ["method.reward", "method.group_size", "method.temperature", "method.top_k", "method.top_p",
          "method.max_new_tokens", "method.ppo_epochs", "method.clip_range", "method.vf_coef",
          "method.gamma", "method.gae_lambda", "method.kl_coef", "method.mini_batch_size"]
DISTILL = ["method.teacher", "method.distill_temperature", "method.distill_alpha"]
PATHS = MAIN + ADAPTER + PREFERENCE + ONLINE + DISTILL

# the advisor's questions shown as pickers (Answers fields), then the device memory in GB
ASKED = ("goal", "data_kind", "wants", "has_reward_model", "checkable", "model_is_base", "from_scratch")
MEMORY = "device_memory_bytes"
INFERRED = ("data_kind", "model_is_base", "from_scratch", "has_reward_model")  # re-read when other tabs change
UNSURE, YES, NO = "auto", "yes", "no"
ELEM = {"chart": "advisor-chart", "advice": "advisor-advice", "use": "advisor-use", "note": "advisor-inferred",
        "used": "advisor-used", "confirm": "advisor-confirm", "check": "method-check", "fix": "method-fix", "table": "method-table"}
# fields of this tab that the inferred answers read (the other tabs' are read when this one opens)
INFER_TRIGGERS = ("method.reward",)
TABLE_COLUMNS = [("name", "method"), ("type", "type"), ("use_case", "use case"), ("memory", "memory"),
                 ("speed", "speed"), ("data", "data needed"), ("typical_lr", "typical LR"), ("regimes", "regimes")]
TABLE_WIDTHS = ["8%", "11%", "20%", "12%", "7%", "18%", "8%", "16%"]  # the whole table fits, no side scroll


def elem_id(name: str) -> str:
    return ELEM.get(name) or f"advisor-{name.replace('_', '-')}"


def to_widget(value) -> str:
    return UNSURE if value is None else (YES if value is True else NO if value is False else str(value))


def from_widget(value):
    if value in (None, "", UNSURE):
        return None
    return {YES: True, NO: False}.get(value, value)


# -- widgets -> answers -> advice ---------------------------------------------------------


def inferred(spec: RunSpec, device_gb: float | None) -> tuple[advisor.Answers, str]:
    """What the studio answers itself for this spec, and a line saying where each came from."""
    kind, rows, how = advisor.kind_of_sources(spec.data.sources)
    seq, seq_rows, seq_how = data_lengths(spec, kind) if kind else (None, None, "")
    answers = advisor.infer_answers(spec, kind, device_memory_gb=device_gb, data_rows=seq_rows or rows,
                                    seq_len=seq, seq_len_source=seq_how)
    rows = answers.data_rows
    base_why = advisor.guess_model_is_base(spec.model)[1]
    size = f"{answers.model_size_params / 1e6:,.1f}M parameters" if answers.model_size_params else "size unknown"
    budget = advisor.Budget.of(answers)
    memory = (f"full training needs about {budget.full / advisor.GIB:.2f} GB (from {budget.note})"
              if budget.full else "memory need unknown (no estimate for this model)")
    length = (f"rows train on ~{seq} tokens ({seq_how})" if seq
              else f"rows planned at max_seq_len {spec.model.max_seq_len} (data lengths not measured)")
    note = (f"Filled in from the other tabs: data kind `{kind or 'not detected'}`"
            f"{f' ({rows:,} rows)' if rows else ''} — {how}; {length}; model: {base_why}; {size}; {memory}.")
    return answers, note


_LENGTHS: dict = {}  # (sources, tokenizer, max_seq_len, method) -> measured lengths: tokenising is slow


def data_lengths(spec: RunSpec, kind: str) -> tuple[int | None, int | None, str]:
    """The blend's p95 token length and rows (studio.advisor.lengths), measured once per
    data/model, read as a method that takes this kind of data would; (None, None, "") when
    the data cannot be read here."""
    key = repr((spec.data, spec.model.name_or_path, spec.model.tokenizer, spec.model.max_seq_len, kind))
    if key not in _LENGTHS:
        import copy

        from studio.advisor.lengths import data_seq_len

        reader = copy.deepcopy(spec)
        reader.method.name = next((n for n, m in advisor.REGISTRY.items() if kind in m.data_kinds), spec.method.name)
        try:
            _LENGTHS[key] = data_seq_len(reader)
        except Exception:  # noqa: BLE001 - a hub dataset, a model not here: plan at max_seq_len
            _LENGTHS[key] = (None, None, "")
    return _LENGTHS[key]


def answers_from(spec: RunSpec, picks: dict, device_gb: float | None) -> advisor.Answers:
    """The spec's inferred answers (memory, size, rows) overridden by the person's picks."""
    answers, _ = inferred(spec, device_gb)
    for name, value in picks.items():
        setattr(answers, name, from_widget(value))
    return answers


def advice_markdown(advice: advisor.Advice) -> str:
    r = advice.runner_up
    lines = [f"### Recommended: {html.escape(advisor.REGISTRY[advice.method].title)} with "
             f"{advisor.REGIME_NAMES[advice.regime]}",
             f"Size class **{advice.size_bucket}**; the path through the chart:", ""]
    for i, step in enumerate(advice.path, 1):
        node = advisor.NODES[step.node_id]
        head = (f"{node.label} → {advisor.child(node.id, step.choice).choice_label}"
                if node.kind == "question" else f"**{node.label}**")
        lines.append(f"{i}. {head} — {step.reason}")
    regime_alt, regime_why = advice.regime_runner_up
    lines += ["", f"- **Runner-up:** {advisor.REGISTRY[r.method].title} with {advisor.REGIME_NAMES[r.regime]} — {r.why}.",
              f"- **Other regime:** {advisor.REGIME_NAMES[regime_alt]} — {regime_why}."]
    lines += warnings_markdown(advice.warnings)
    if advice.fit:
        fit = advice.fit
        verdict = "fits" if fit["fits"] else "does not fit"
        lines += ["", f"**Memory of this pick:** {fit['share']} by the estimate — {verdict} the "
                      f"{advisor.HEADROOM:.0%} planning limit"
                  + (f" (after {', '.join(fit['fallbacks'])})" if fit["fallbacks"] else "") + "."]
    if advice.reasons:
        lines += ["", "**The numbers and why:**"]
        lines += [f"- `{k}={advice.recipe.get(k)}` — {why}" for k, why in advice.reasons.items()
                  if k in advice.recipe and k != "train.grad_accum"]
    lines += ["", "**Use this sets:** " + ", ".join(f"`{k}={v}`" for k, v in advice.recipe.items())]
    return "\n".join(lines)


def recipe_changes(spec: RunSpec, recipe: dict) -> list[tuple[str, object, object]]:
    """(field, old, new) for each field "use this" would change (the others stay as they are)."""
    new = advisor.apply_recipe(spec, recipe)
    out = []
    for key in recipe:
        old_value, new_value = form._get(spec, key), form._get(new, key)
        if old_value != new_value:
            out.append((key, old_value, new_value))
    return out


def warnings_markdown(warnings) -> list[str]:
    # words, not emoji: they read the same in every font and to a screen reader
    word = {"error": "Will not train:", "warning": "Warning:", "info": "Note:"}
    return [f"\n**{word.get(w.level, 'Warning:')}** {w.message} **Fix:** {w.fix}" for w in warnings]


def render(answers: advisor.Answers) -> tuple[str, str, advisor.Advice | None]:
    """(chart HTML, advice markdown, advice); a bad answer shows its message instead."""
    try:
        advice = advisor.advise(answers)
    except SpecError as exc:
        return flowchart.svg(None, theme="auto"), f"**Cannot advise:** `{exc.field}`: {exc.fix}", None
    return flowchart.svg(advice, theme="auto"), advice_markdown(advice), advice


def check_line(method: str, kind: str | None, reward) -> tuple[str, dict]:
    """The line under the method picker, and the fields its one-click fix sets ({} if none)."""
    found = advisor.check_choice(method, kind, reward)
    shown = [w for w in found if w.level != "info"] or found
    if not shown:
        return "", {}
    fix = next((w.apply for w in shown if w.apply), {})
    return "".join(warnings_markdown(shown)).strip(), fix


def comparison_rows() -> tuple[list[str], list[list]]:
    rows = []
    for card in advisor.method_table():
        row = []
        for key, _ in TABLE_COLUMNS:
            value = card[key]
            row.append(", ".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float)
                       else value)
        rows.append(row)
    return [label for _, label in TABLE_COLUMNS], rows


# -- building the tab -----------------------------------------------------------------------


def _picker(q: advisor.Question, value) -> gr.Dropdown:
    choices = [(label, to_widget(v)) for v, label in q.choices]
    return gr.Dropdown(choices=choices, value=to_widget(value), label=q.text, info=q.help,
                       elem_id=elem_id(q.field), interactive=True)


def device_memory() -> tuple[float | None, str]:
    found, what = advisor.detect_device_memory()
    return (round(found / advisor.GIB, 1) if found else None), what


def build(spec) -> dict:
    """The tab's widgets by name; widgets["fields"]: its spec fields by path, widgets["asked"]:
    the advisor's pickers in ASKED order. The caller adds widgets["tab"] before `wire`."""
    gb, where = device_memory()
    answers, note = inferred(spec, gb)
    w: dict = {}
    with gr.Row():
        fields = form.widgets(spec, MAIN)
    line, fix = check_line(spec.method.name, answers.data_kind, spec.method.reward)
    with gr.Row():
        w["check"] = gr.Markdown(line, elem_id=elem_id("check"))
        w["fix"] = gr.Button("Apply the fix", elem_id=elem_id("fix"), visible=bool(fix), size="sm", scale=0)
    with gr.Accordion("Parameter regime (adapters, freezing, quantisation)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, ADAPTER))
    with gr.Accordion("Preference methods (DPO, ORPO, SimPO, KTO)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, PREFERENCE))
    with gr.Accordion("Online RL (GRPO, PPO)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, ONLINE))
    from studio.ui import reward_playground

    reward_playground.build(fields.get("method.reward"))
    with gr.Accordion("Distillation", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, DISTILL))
    with gr.Accordion("Advisor: which method and regime?", open=True):
        w["note"] = gr.Markdown(note, elem_id=elem_id("note"))
        _advisor_widgets(w, answers, gb, where)
    with gr.Accordion("Compare methods", open=False):
        headers, rows = comparison_rows()
        w["table"] = gr.Dataframe(value=rows, headers=headers, interactive=False, wrap=True,
                                  column_widths=TABLE_WIDTHS, elem_id=elem_id("table"))
    w["fields"] = fields
    return w


def _advisor_widgets(w: dict, answers: advisor.Answers, gb: float | None, where: str) -> None:
    """The questions, device memory, chart, advice and "use this" (into `w`)."""
    by_field = {q.field: q for q in advisor.questions()}
    chart, text, _ = render(answers)
    with gr.Row():
        w["asked"] = [_picker(by_field[name], getattr(answers, name)) for name in ASKED[:3]]
    with gr.Row():
        w["asked"] += [_picker(by_field[name], getattr(answers, name)) for name in ASKED[3:]]
        w["memory"] = gr.Number(value=gb, label="Device memory (GB)", elem_id=elem_id(MEMORY),
                                info=f"Detected: {where}. Enter a target GPU's memory to plan for it.")
    w["chart"] = gr.HTML(chart, elem_id=elem_id("chart"))
    w["advice"] = gr.Markdown(text, elem_id=elem_id("advice"))
    with gr.Row():
        w["use"] = gr.Button("Use this", variant="primary", elem_id=elem_id("use"), scale=0)
        w["confirm"] = gr.Button("Apply these changes", variant="primary", elem_id=elem_id("confirm"),
                                 visible=False, scale=0)
        w["used"] = gr.Markdown("", elem_id=elem_id("used"))


# -- events across tabs ---------------------------------------------------------------------


def signature(spec: RunSpec) -> str:
    """What the inferred answers depend on, to tell whether they need answering again."""
    return repr((spec.data.sources, spec.model, spec.method.reward))


def _read(paths: list[str], values) -> tuple[RunSpec, dict, float | None]:
    """The handlers' inputs, ASKED pickers + memory + every field, as (spec, picks, GB)."""
    n = len(ASKED)
    picks = dict(zip(ASKED, values[:n]))
    gb = values[n] or None
    spec = form.spec_from_values(paths, values[n + 1:])
    return spec, picks, gb


def on_choice(method, kind, reward):
    line, fix = check_line(method, from_widget(kind), reward)
    return line, gr.update(visible=bool(fix))


def _fill(paths: list[str], spec: RunSpec, values: dict, kind) -> list:
    """Updates that set `values` (spec path -> value) and leave every other field alone,
    then the method check for the result."""
    new = advisor.apply_recipe(spec, values)
    updates = [form.updates_for(new, [p])[0] if p in values else gr.update() for p in paths]
    return updates + list(on_choice(new.method.name, kind, new.method.reward))


def wire(demo: gr.Blocks, widgets: dict, fields: dict, settings) -> None:
    """Advice from the questions and every tab's fields; "use this" and the fix fill fields.
    `widgets` is build's dict plus widgets["tab"], the Method tab (its opening re-infers)."""
    paths = list(fields)
    inputs = widgets["asked"] + [widgets["memory"]] + list(fields.values())
    _wire_advice(widgets, paths, inputs)
    _wire_inferred(widgets, fields, inputs)
    _wire_check_and_fix(widgets, fields)
    _wire_use(widgets, paths, inputs)


def _wire_advice(w: dict, paths: list[str], inputs: list) -> None:
    """A changed answer (or device memory) redraws the chart and the advice."""
    def on_answers(*values):
        try:
            spec, picks, gb = _read(paths, values)
        except SpecError as exc:
            return gr.update(), f"**Cannot advise:** fix `{exc.field}` first: {exc.fix}"
        except (ValueError, TypeError) as exc:  # an unreadable field elsewhere: the Train tab names it
            return gr.update(), f"**Cannot advise:** the form cannot be read yet: {exc}"
        chart_html, markdown, _ = render(answers_from(spec, picks, gb))
        return chart_html, markdown

    gr.on([c.change for c in w["asked"]] + [w["memory"].change], on_answers, inputs, [w["chart"], w["advice"]],
          show_progress="hidden", api_visibility="private")


def _wire_inferred(w: dict, fields: dict, inputs: list) -> None:
    """The inferred answers, asked again when the data, model or reward they read changed."""
    paths, comps = list(fields), list(fields.values())

    def on_other_tabs(seen, *values):
        """The data, model or reward may have changed: answer the inferred questions again,
        but only when they did, so the person's own corrections survive a tab switch."""
        unchanged = [gr.update()] * (len(INFERRED) + 4)
        try:
            spec, picks, gb = _read(paths, values)
        except (SpecError, ValueError, TypeError):
            return unchanged
        now = signature(spec)
        if now == seen:
            return unchanged
        answers, line = inferred(spec, gb)
        picks.update({name: to_widget(getattr(answers, name)) for name in INFERRED})
        chart_html, markdown, _ = render(answers_from(spec, picks, gb))
        return [gr.update(value=picks[name]) for name in INFERRED] + [line, now, chart_html, markdown]

    base = form.spec_from_values(paths, [c.value for c in comps])
    seen = gr.State(signature(base))
    inferred_outputs = ([w["asked"][ASKED.index(name)] for name in INFERRED]
                        + [w["note"], seen, w["chart"], w["advice"]])
    # Opening the tab, rather than each field's change: the browser runs a field's change
    # handlers one after another, so ours would wait behind the Data tab's live preview.
    triggers = [w["tab"].select] + [fields[p].change for p in INFER_TRIGGERS if p in fields]
    gr.on(triggers, on_other_tabs, [seen] + inputs, inferred_outputs, show_progress="hidden",
          api_visibility="private", trigger_mode="always_last")


def _wire_check_and_fix(w: dict, fields: dict) -> None:
    """The line under the method picker, and its one-click fix."""
    paths, comps = list(fields), list(fields.values())
    kind_box = w["asked"][ASKED.index("data_kind")]
    # .input, not .change: the browser runs a field's change handlers one after another and
    # this line should not wait for the Data tab's preview; "use this" and the fix set it too
    gr.on([fields["method.name"].input, fields["method.reward"].input, kind_box.change], on_choice,
          [fields["method.name"], kind_box, fields["method.reward"]], [w["check"], w["fix"]],
          show_progress="hidden", api_visibility="private")

    def on_fix(kind, *values):
        try:
            spec = form.spec_from_values(paths, values)
        except SpecError as exc:
            raise gr.Error(f"{exc.field}: {exc.fix}") from None
        _, fix = check_line(spec.method.name, from_widget(kind), spec.method.reward)
        return _fill(paths, spec, fix, kind)

    w["fix"].click(on_fix, [kind_box] + comps, comps + [w["check"], w["fix"]], api_visibility="private")


def _wire_use(w: dict, paths: list[str], inputs: list) -> None:
    """"Use this": first the changes it would make, then "apply these changes" fills them."""
    def on_use(*values):
        """First click: the fields it would change, old -> new, and a button to apply them
        (the person's own learning rate or steps are never overwritten unseen)."""
        try:
            spec, picks, gb = _read(paths, values)
            advice = advisor.advise(answers_from(spec, picks, gb))
        except SpecError as exc:
            raise gr.Error(f"{exc.field}: {exc.fix}") from None
        changes = recipe_changes(spec, advice.recipe)
        if not changes:
            return "Every field already holds the recommendation: nothing to change.", gr.update(visible=False)
        lines = [f"**{advice.method}** with **{advice.regime}** would change {len(changes)} field(s):"]
        lines += [f"- `{k}`: `{old}` → `{new}`" for k, old, new in changes]
        return "\n".join(lines), gr.update(visible=True)

    def on_confirm(*values):
        try:
            spec, picks, gb = _read(paths, values)
            advice = advisor.advise(answers_from(spec, picks, gb))
            updates = _fill(paths, spec, advice.recipe, picks["data_kind"])
        except SpecError as exc:
            raise gr.Error(f"{exc.field}: {exc.fix}") from None
        shown = ", ".join(f"{k}={v}" for k, v in advice.recipe.items() if k.startswith(("method.", "train.")))
        done = (f"Filled the Method and Train tabs for **{advice.method}** with **{advice.regime}**: "
                f"`{shown}`")
        return [*updates, done, gr.update(visible=False)]

    comps = inputs[len(ASKED) + 1:]
    w["use"].click(on_use, inputs, [w["used"], w["confirm"]], api_visibility="private")
    w["confirm"].click(on_confirm, inputs, comps + [w["check"], w["fix"], w["used"], w["confirm"]],
                       api_visibility="private")
