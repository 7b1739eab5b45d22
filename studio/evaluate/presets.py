"""The three questions as evaluation specs: did it learn, what did it forget, does the
export behave the same. Each returns an EvalSpec the CLI and the Evaluate tab launch."""
from __future__ import annotations

from studio.evaluate.spec import RUN_DATA, EvalSettings, EvalSpec, TaskSpec

GENERAL_PROBE = "assets/eval/general_probe.jsonl"
GENERAL_TEXT = "assets/data/corpus_test.jsonl"
FORGET_THRESHOLD = 0.05  # a drop of 5 points (or 0.05 nats of loss) is shown red
PRESETS = {"learn": "Did it learn? The run's task on held-out data, tuned vs base",
           "forget": "What did it forget? The general probe, tuned vs base",
           "export": "Does the export behave the same? Greedy replies, trained vs exported"}


def learn(run: str, data: str = "", max_examples: int = 0, settings: EvalSettings | None = None) -> EvalSpec:
    """Held-out loss on the run's own split, and exact match of greedy replies on `data`
    (a prompt set with references; the run's held-out split when not given)."""
    return EvalSpec(name="learn", models=[f"base:{run}", f"run:{run}"], settings=settings or EvalSettings(), tasks=[
        TaskSpec(name="held-out loss", kind="loss", data=RUN_DATA),
        TaskSpec(name="held-out answers", kind="generate", data=data or RUN_DATA, metrics=["exact_match"],
                 max_examples=max_examples),
    ])


def forget(run: str, probe: str = "", text: str = "", max_examples: int = 0,
           settings: EvalSettings | None = None) -> EvalSpec:
    """The shipped general probe (or a local copy a person points to), tuned vs base."""
    return EvalSpec(name="forget", models=[f"base:{run}", f"run:{run}"], settings=settings or EvalSettings(), tasks=[
        TaskSpec(name="general probe", kind="choice", data=probe or GENERAL_PROBE, chat=False,
                 max_examples=max_examples, threshold=FORGET_THRESHOLD),
        TaskSpec(name="general text", kind="loss", data=text or GENERAL_TEXT, max_examples=max_examples,
                 threshold=FORGET_THRESHOLD),
    ])


def export(run: str, exported: str, prompts: str = "", max_examples: int = 0,
           settings: EvalSettings | None = None) -> EvalSpec:
    """The same prompts through the run's model and its export, greedy: 100% agreement to pass."""
    return EvalSpec(name="export", models=[f"run:{run}", exported], settings=settings or EvalSettings(), tasks=[
        TaskSpec(name="export parity", kind="parity", data=prompts or RUN_DATA, max_examples=max_examples,
                 threshold=1.0),
    ])
