"""The Method tab's reward playground: score pasted completions with method.reward (each
component and the weighted sum) before spending a run on it, or completions sampled from
a run's model on prompts of a data file (studio.rewards.sampling, imported on the click:
the page stays light). Self-contained: `build` makes the accordion and wires its buttons. User files and the code sandbox are refused
in hosted mode by studio.rewards itself (the serve entry exports the mode)."""
from __future__ import annotations

import gradio as gr

SEPARATOR = "---"
EXAMPLE = ('{"city": "Oslo", "day": "Monday", "tickets": 2}\n' + SEPARATOR +
           '\nSure! Oslo on Monday, 2 tickets.')


def split_completions(text: str) -> list[str]:
    """Completions pasted one after another, separated by a line of three dashes."""
    parts, current = [], []
    for line in (text or "").splitlines():
        if line.strip() == SEPARATOR:
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current))
    return [p.strip() for p in parts if p.strip()]


def score(reward: str, reference: str, completions_text: str):
    """(table update, message) for the playground's button."""
    from studio.rewards.tryout import as_table, headers, score_completions

    completions = split_completions(completions_text)
    if not completions:
        return gr.update(value=None), "**Nothing to score:** paste completions, separated by a line `---`."
    try:
        scores = score_completions(reward, completions, [reference] if reference.strip() else None)
    except (ValueError, PermissionError) as exc:
        return gr.update(value=None), f"**Cannot score:** {exc}"
    rows = as_table(scores, completions)
    best = max(range(len(rows)), key=lambda i: scores.totals[i])
    return gr.update(value=rows, headers=headers(scores)), f"Highest: completion {best + 1} ({scores.totals[best]:g})."


def sample_score(reward: str, run: str, data: str, k, n, temperature, runs_dir: str | None = None):
    """(table update, message) for "Sample from the run": N completions of the run's model
    on each of the first K prompts of `data`, scored against each row's reference. The
    model loads here, on the click (studio.rewards.sampling keeps it for the next one)."""
    from pathlib import Path

    from studio.rewards.sampling import sample_and_score
    from studio.rewards.tryout import as_table, headers, spread

    try:
        k, n = int(k or 0), int(n or 0)
        got, scores = sample_and_score(reward, run, data, k, n, runs_dir, temperature=float(temperature or 0.0))
    except (ValueError, PermissionError, OSError) as exc:
        return gr.update(value=None), f"**Cannot sample:** {exc}"
    rows = [[" ".join(got.prompt_text(i).split())[-60:], *row]
            for i, row in enumerate(as_table(scores, got.completions, width=70))]
    info = spread(scores, n)
    name = Path(got.model).parent.name if Path(got.model).name == "final" else Path(got.model).name
    flat = (f" {info['flat_groups']} of {info['groups']} prompts got the same total on every sample: GRPO learns "
            "nothing from those (raise the temperature, or give the reward partial credit)."
            if info["flat_groups"] else " Every prompt's samples differ in total: GRPO has something to rank.")
    return (gr.update(value=rows, headers=["prompt", *headers(scores)]),
            f"{len(got.completions)} completions of {name}: mean total {info['mean_total']:.4g}.{flat}")


def build(reward_field=None, default_reward: str = "json_valid, json_match", runs_dir: str | None = None) -> dict:
    """The "Try the reward" accordion; reward_field (the method.reward widget) seeds it.
    runs_dir: where `run` is looked up (None: STUDIO_RUNS_DIR, which the server sets)."""
    with gr.Accordion("Try the reward", open=False, elem_id="reward-playground"):
        gr.Markdown("Score completions with a reward before training: each component and the weighted sum "
                    "GRPO ranks by. Separate completions with a line `---`.")
        with gr.Row():
            reward = gr.Textbox(label="reward", value=default_reward, elem_id="playground-reward",
                                info="as method.reward, e.g. think_format, numeric:tol=0.01")
            reference = gr.Textbox(label="reference (the answer column)", elem_id="playground-reference",
                                   value='{"city": "Oslo", "day": "Monday", "tickets": 2}')
        completions = gr.Textbox(label="completions", lines=6, value=EXAMPLE, elem_id="playground-completions")
        button = gr.Button("Score", elem_id="playground-score")
        table = gr.Dataframe(headers=["completion", "total"], interactive=False, elem_id="playground-table")
        message = gr.Markdown(elem_id="playground-message")
        gr.Markdown("**Or sample the completions** from a run's model, N per prompt as a GRPO group, on the "
                    "first K prompts of a data file, each scored against its row's answer (the model loads on "
                    "the click).")
        with gr.Row():
            run = gr.Textbox(label="run", elem_id="playground-run",
                             placeholder="a run id or recipe name, e.g. extract-json-sft")
            data = gr.Textbox(label="prompts from", value="assets/data/extract_prompts_test.jsonl",
                              elem_id="playground-data")
            k = gr.Number(label="prompts (K)", value=4, precision=0, minimum=1, elem_id="playground-k")
            n = gr.Number(label="samples each (N)", value=4, precision=0, minimum=1, elem_id="playground-n")
            temperature = gr.Number(label="temperature", value=0.7, minimum=0, elem_id="playground-temperature")
        sample = gr.Button("Sample from the run", elem_id="playground-sample")
    button.click(score, [reward, reference, completions], [table, message], api_visibility="private")
    sample.click(lambda *a: sample_score(*a, runs_dir=runs_dir), [reward, run, data, k, n, temperature],
                 [table, message], api_visibility="private")
    if reward_field is not None:  # follow the Online RL section's reward while it is edited
        reward_field.change(lambda v: v, reward_field, reward, api_visibility="private")
    return {"playground.reward": reward}
