"""metrics.jsonl: the schema, the writer the worker uses, and the reader the UI tails.

One JSON object per line, flushed as it is written, so a reader never waits for a
buffer and a crash loses at most the line being written. Every record holds:
  step (int), time (unix seconds), elapsed (seconds since the run started),
  kind ("train" | "eval" | "summary")
and, where known: epoch, loss, learning_rate, grad_norm, tokens_per_second,
num_tokens, eval_loss, plus each method's own keys (rewards/chosen, kl, ...).

This module imports no torch and no transformers at module level: the UI reads it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

METRICS_FILE = "metrics.jsonl"

# trl/transformers log names -> the studio's stable names (the summary repeats train_*)
_RENAMES = {"train_loss": "loss", "train_runtime": "runtime", "num_input_tokens_seen": "num_tokens"}
_DROP = {"total_flos", "train_samples_per_second", "train_steps_per_second"}


def _clean(value):
    """JSON cannot hold NaN/inf; keep the record valid and say what happened."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class MetricsWriter:
    """Append records to metrics.jsonl; also derives tokens_per_second from num_tokens."""

    def __init__(self, run_dir: str | Path, start_time: float | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.start = start_time or time.time()
        self._last_tokens: tuple[float, float] | None = None  # (time, num_tokens)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict, kind: str = "train") -> dict:
        now = time.time()
        out = {"step": int(record.get("step", 0)), "time": round(now, 3),
               "elapsed": round(now - self.start, 3), "kind": record.get("kind", kind)}
        for key, value in record.items():
            if key in _DROP or key in ("step", "kind"):
                continue
            out[_RENAMES.get(key, key)] = _clean(value)
        tokens = out.get("num_tokens")
        if isinstance(tokens, (int, float)) and "tokens_per_second" not in out and out["kind"] == "train":
            if self._last_tokens and now > self._last_tokens[0] and tokens > self._last_tokens[1]:
                out["tokens_per_second"] = round((tokens - self._last_tokens[1]) / (now - self._last_tokens[0]), 2)
            self._last_tokens = (now, tokens)
        self._file.write(json.dumps(out) + "\n")
        self._file.flush()
        return out

    def close(self) -> None:
        self._file.close()


class MetricsTail:
    """Reads only what was appended since the last call (by byte offset).

    A half-written last line (no newline yet) is left for the next call, so a reader
    racing the writer never sees a broken record.
    """

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset if isinstance(offset, int) and offset >= 0 else 0
        self.skipped = 0  # lines that were not a record of the documented shape

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:  # not there yet, or unreadable: nothing to show, never a crash
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            record = parse_record(line)
            if record is None:
                self.skipped += 1  # a torn line from a killed writer, or a foreign one
            else:
                records.append(record)
        return records


# keys every reader treats as numbers (charts, the history, the CLI's progress line)
NUMERIC_KEYS = ("step", "time", "elapsed", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm",
                "tokens_per_second", "num_tokens", "runtime", "perplexity")


def parse_record(line: bytes | str) -> dict | None:
    """One metrics line as a record, or None when it is not one: not JSON, not UTF-8, not
    an object, a known key that is not a number, or a kind that is not text. Values that
    JSON cannot hold (NaN, Infinity: Python's json accepts them) read as missing."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind", ""), str):
        return None
    for key in NUMERIC_KEYS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            record[key] = None
        elif isinstance(value, int) and abs(value) > 1 << 62:  # no metric is that large; floats overflow
            return None
    return record


def read_all(run_dir: str | Path) -> list[dict]:
    return MetricsTail(Path(run_dir) / METRICS_FILE).read_new()


def make_callback(writer: MetricsWriter, on_step=None, should_stop=None):
    """A transformers TrainerCallback writing each log event to metrics.jsonl.

    Built in a function so that importing this module does not import transformers.
    `on_step(step, total, epoch)` keeps status.json current; `should_stop()` returns None,
    "now" or "save": a stop request ends training at the next step boundary, and "save"
    also writes a resumable checkpoint (weights + optimizer) at that step.
    """
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            logs = dict(logs)
            kind = "train"
            if any(k.startswith("eval_") for k in logs):
                kind = "eval"
            if "train_loss" in logs:
                kind = "summary"
            else:
                # transformers adds run-average speed to every log; the writer derives
                # the current tokens/s from num_tokens instead, which is what a chart needs
                for key in ("train_runtime", "train_tokens_per_second"):
                    logs.pop(key, None)
            if state.num_input_tokens_seen and "num_tokens" not in logs:
                logs["num_input_tokens_seen"] = state.num_input_tokens_seen
            if kind == "eval" and "eval_loss" in logs and logs["eval_loss"] is not None:
                logs.setdefault("perplexity", math.exp(min(logs["eval_loss"], 50)))
            writer.write({"step": state.global_step, "epoch": state.epoch, **logs}, kind=kind)

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero and on_step:
                on_step(state.global_step, state.max_steps, state.epoch)
            request = should_stop() if should_stop else None
            if request:
                control.should_training_stop = True
                control.should_save = request == "save"

    return MetricsCallback()

