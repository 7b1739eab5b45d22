"""train.eval_tasks: a generation task scored at each evaluation (or each checkpoint when
the run does not evaluate), streamed into metrics.jsonl as `heldout/<file>/exact_match`
so the Train tab draws it beside eval loss (studio.charts draws every method metric).

Each entry is a prompt set with references (prompt + answer, or chats whose last turn is
the reference), the first MAX_EXAMPLES rows, greedy, exact match after normalising."""
from __future__ import annotations

from pathlib import Path

MAX_EXAMPLES = 64
MAX_NEW_TOKENS = 16


def load_tasks(spec) -> dict[str, list[dict]]:
    """{name: examples}; ValueError naming train.eval_tasks before training starts."""
    from studio.evaluate.spec import TaskSpec
    from studio.evaluate.tasks import TaskError, load_task
    from studio.spec import comma_list

    out = {}
    for path in comma_list(spec.train.eval_tasks):
        try:
            data = load_task(TaskSpec(kind="generate", data=path, max_examples=MAX_EXAMPLES), "train.eval_tasks", None)
        except TaskError as exc:
            raise ValueError(str(exc).replace("train.eval_tasks.data", "train.eval_tasks")) from None
        out[Path(path).stem] = data.examples
    return out


def eval_task_callback(spec, writer):
    from transformers import TrainerCallback

    from studio.evaluate import scoring
    from studio.evaluate.metrics import exact_match

    tasks = load_tasks(spec)
    evaluates = spec.train.eval_every > 0

    class EvalTaskCallback(TrainerCallback):
        done_at = -1

        def _score(self, state, model, tokenizer):
            if tokenizer is None or state.global_step == self.done_at or not state.is_world_process_zero:
                return
            self.done_at = state.global_step
            was_training = model.training
            model.eval()
            record = {"step": state.global_step}
            for name, examples in tasks.items():
                rows = []
                for start in range(0, len(examples), 16):
                    batch = examples[start:start + 16]
                    rows += scoring.per_example(lambda b: scoring.generate_batch(b, model, tokenizer,
                                                                                 MAX_NEW_TOKENS, True), batch)
                scores = [exact_match(r.get("output"), e["reference"]) for r, e in zip(rows, examples)
                          if not r.get("error")]
                record[f"heldout/{name}/exact_match"] = sum(scores) / len(scores) if scores else None
            model.train(was_training)
            writer.write(record, kind="eval")

        def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
            self._score(state, model, processing_class)

        def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
            if not evaluates:
                self._score(state, model, processing_class)

    return EvalTaskCallback()
