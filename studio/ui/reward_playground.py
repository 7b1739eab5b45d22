"""The Method tab's reward playground: score pasted completions with method.reward (each
component and the weighted sum) before spending a run on it. Self-contained: `build`
makes the accordion and wires its button. User files and the code sandbox are refused
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


def build(reward_field=None, default_reward: str = "json_valid, json_match") -> dict:
    """The "Try the reward" accordion; reward_field (the method.reward widget) seeds it."""
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
    button.click(score, [reward, reference, completions], [table, message], api_visibility="private")
    if reward_field is not None:  # follow the Online RL section's reward while it is edited
        reward_field.change(lambda v: v, reward_field, reward, api_visibility="private")
    return {"playground.reward": reward}
