"""Evaluation (#21) on real models the tests train: the quickstart run (SFT from scratch on
the shipped arithmetic) and a LoRA run on top of it, merged by `studio export`.

- held-out loss from `studio eval` equals the trainer's own eval_loss on the same split;
- `studio eval learn` (a background process) puts the tuned run above its scratch base on
  the shipped held-out arithmetic;
- export parity: a correct merge agrees token for token; a broken chat template fails,
  with the first differing token named;
- bad input is refused before an evaluation folder exists."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.evaluate import background, presets
from studio.evaluate.runner import run_eval
from studio.evaluate.spec import EvalSettings, EvalSpec, TaskSpec
from studio.presets import load_run
from tests.conftest import ROOT, run_in_process, spec_from

TEST_FILE = "assets/data/arith_sft_test.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval-runs")


@pytest.fixture(scope="module")
def quickstart(runs) -> Path:
    """The quickstart recipe as shipped, except one eval batch of 32 held-out rows: the
    trainer's eval_loss is then one token-weighted mean, the quantity `studio eval` reports
    (over several batches the Trainer averages batch means instead)."""
    spec = load_run("quickstart").with_overrides(["train.eval_steps=1"])
    return run_in_process(spec, runs)


@pytest.fixture(scope="module")
def lora_run(quickstart, runs) -> Path:
    spec = spec_from(name="lora-on-quickstart",
                     model={"source": "pretrained", "name_or_path": str(quickstart / "final"), "max_seq_len": 128},
                     data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.05},
                     method={"name": "sft", "regime": "lora", "lora_r": 8},
                     train={"max_steps": 15, "batch_size": 16, "learning_rate": 3e-3, "log_every": 5})
    return run_in_process(spec, runs)


def evaluate(spec: EvalSpec, runs: Path) -> tuple[dict, Path]:
    eval_dir = background.create(spec, runs)
    return run_eval(eval_dir, runs), eval_dir


def test_heldout_loss_equals_the_trainers_eval_loss(quickstart, runs):
    trainer = [json.loads(line) for line in (quickstart / "metrics.jsonl").read_text().splitlines()
               if '"eval_loss"' in line]
    final_eval = max(trainer, key=lambda r: r["step"])
    assert final_eval["step"] == 300  # evaluated on the final weights (eval_every 50 divides 300)
    spec = EvalSpec(models=[f"run:{quickstart.name}"], tasks=[TaskSpec(name="heldout", kind="loss", data="run")])
    summary, eval_dir = evaluate(spec, runs)
    got = summary["scores"]["heldout"][quickstart.name]
    assert got["loss"]["n"] == 32  # the rows the trainer evaluated on: one batch
    assert abs(got["loss"]["value"] - final_eval["eval_loss"]) < 1e-4, (got["loss"], final_eval["eval_loss"])
    assert abs(got["perplexity"]["value"] - math.exp(final_eval["eval_loss"])) < 1e-3
    assert got["loss"]["ci_low"] < got["loss"]["value"] < got["loss"]["ci_high"]
    assert eval_dir.parent == quickstart / "eval"
    assert {"spec.yaml", "examples.jsonl", "summary.json"} <= {p.name for p in eval_dir.iterdir()}


def test_learn_from_the_cli_puts_the_run_above_its_scratch_base(quickstart, runs):
    """Through `python -m studio eval learn` (a background evaluation process). Measured:
    tuned 0.924 (seed 0: 0.946) vs base 0.000 exact match on all 224 held-out sums; #21
    asks for a gain of at least 30 points (the recipe at batch 16, lr 3e-3 made 0.152)."""
    out = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), "eval", "learn", quickstart.name,
                          "--data", TEST_FILE, "--max-new-tokens", "6", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    base, tuned = summary["models"]
    answers = summary["scores"]["held-out answers"]
    assert answers[base]["exact_match"]["n"] == 224
    gain = answers[tuned]["exact_match"]["value"] - answers[base]["exact_match"]["value"]
    assert gain >= 0.30, answers
    assert summary["deltas"]["held-out answers"][tuned]["exact_match"] == pytest.approx(gain)
    loss = summary["scores"]["held-out loss"]
    assert loss[tuned]["loss"]["value"] < loss[base]["loss"]["value"] - 3  # a random model: ~ln(vocab)
    status = background.read_status(Path(out.stdout.split("Evaluation directory: ")[1].split()[0]))
    assert status["state"] == "completed" and status["done"] == status["total"] > 0


def test_export_parity_passes_a_merge_and_fails_a_broken_template(lora_run, runs, tmp_path):
    from studio.export import merge

    merged = merge(str(lora_run), tmp_path / "merged")
    broken = tmp_path / "broken"
    shutil.copytree(merged, broken)
    # the mistake peers' users hit: a template that drops the assistant prefix of the turn
    template = (broken / "chat_template.jinja").read_text()
    (broken / "chat_template.jinja").write_text(template.replace("assistant", "helper"))
    settings = EvalSettings(max_new_tokens=6)
    summary, _ = evaluate(presets.export(lora_run.name, str(merged), prompts=TEST_FILE, max_examples=24,
                                         settings=settings), runs)
    verdict = summary["parity"]["export parity"][merged.name]
    assert verdict["passed"] and verdict["agreement"] == 1.0 and not verdict["mismatches"]
    summary, eval_dir = evaluate(presets.export(lora_run.name, str(broken), prompts=TEST_FILE, max_examples=24,
                                                settings=settings), runs)
    verdict = summary["parity"]["export parity"][broken.name]
    assert not verdict["passed"] and verdict["agreement"] < 1.0
    first = verdict["mismatches"][0]
    assert first["a_token"] != first["b_token"] and first["position"] >= 0
    rows = [r for r in background.read_examples(eval_dir) if r.get("first_difference")]
    assert len(rows) == len(verdict["mismatches"])


def test_bad_input_is_refused_before_work_starts(quickstart, runs, tmp_path):
    nocol = tmp_path / "nocol.jsonl"
    nocol.write_text('{"question": "2+2?"}\n')
    cases = [
        (EvalSpec(models=[f"run:{quickstart.name}"], tasks=[TaskSpec(kind="generate", data=str(nocol))]),
         "columns a generate task reads"),
        (EvalSpec(models=[f"run:{quickstart.name}"], tasks=[TaskSpec(kind="loss", data=TEST_FILE,
                                                                     metrics=["exact_match"])]),
         "'exact_match' does not fit a loss task"),
        (EvalSpec(models=[str(tmp_path / "nothing-here")], tasks=[TaskSpec(kind="loss", data=TEST_FILE)]),
         "models[0]"),
        (EvalSpec(models=[f"run:{quickstart.name}@checkpoint-999"], tasks=[TaskSpec(kind="loss", data=TEST_FILE)]),
         "has no checkpoint-999"),
        (EvalSpec(models=[f"run:{quickstart.name}"], tasks=[TaskSpec(kind="parity", data=TEST_FILE)]),
         "at least two models"),
    ]
    before = set((quickstart / "eval").iterdir()) if (quickstart / "eval").is_dir() else set()
    for spec, needle in cases:
        with pytest.raises(ValueError) as err:
            background.create(spec, runs)
        assert needle in str(err.value), str(err.value)
    after = set((quickstart / "eval").iterdir()) if (quickstart / "eval").is_dir() else set()
    assert after == before  # nothing was made


def test_one_failing_example_is_counted_not_fatal(quickstart, runs, tmp_path):
    data = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "What is 2 + 2?", "answer": "4"},
            {"messages": [{"role": 5, "content": "hi"}], "answer": "1"},  # the template cannot render role 5
            {"prompt": "What is 3 + 1?", "answer": "4"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = EvalSpec(models=[f"run:{quickstart.name}"], tasks=[TaskSpec(name="g", kind="generate", data=str(data))],
                    settings=EvalSettings(max_new_tokens=4, batch_size=3))
    summary, eval_dir = evaluate(spec, runs)
    em = summary["scores"]["g"][quickstart.name]["exact_match"]
    assert em["failed"] == 1 and em["n"] == 2
    errors = [r for r in background.read_examples(eval_dir) if r.get("error")]
    assert [r["i"] for r in errors] == [1]


def test_pairwise_and_the_forget_preset_on_the_quickstart(quickstart, runs):
    """Measured: pairwise 0.47 (base) vs 0.65 (tuned) on the 224 held-out preference pairs;
    the tuned run, trained only on arithmetic chats, is ~6 nats worse than its random init on
    held-out prose: the forget preset marks that drop."""
    from studio.evaluate import report

    spec = presets.forget(quickstart.name, max_examples=50, settings=EvalSettings(bootstrap=200))
    spec.tasks.append(TaskSpec(name="prefs", kind="pairwise", data="assets/data/arith_prefs_test.jsonl"))
    summary, _ = evaluate(spec, runs)
    base, tuned = summary["models"]
    prefs = summary["scores"]["prefs"]
    assert prefs[tuned]["pairwise_acc"]["value"] > prefs[base]["pairwise_acc"]["value"] + 0.08
    assert summary["scores"]["general probe"][tuned]["acc"]["n"] == 50
    drops = {(r["task"], r["metric"]) for r in report.scorecard(summary) if r["dropped"]}
    assert ("general text", "loss") in drops and ("prefs", "pairwise_acc") not in drops
    assert "DROP" in report.scorecard_text(summary)


def test_a_reward_model_judges_both_models_on_the_same_prompts(quickstart, runs, tmp_path):
    """A one-score classifier folder (seeded, untrained: the wiring is what is checked):
    each reply's reward is the judge's own score of that prompt and reply, and the win rate
    is read from those rewards."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed

    from studio.methods.reward_model import load_reward_model
    from studio.model import load_tokenizer
    from studio.spec import ModelSpec

    final = quickstart / "final"
    config = AutoConfig.from_pretrained(final, num_labels=1)
    tok = load_tokenizer(ModelSpec(source="pretrained", name_or_path=str(final)))
    config.pad_token_id = tok.pad_token_id
    set_seed(1)
    judge_dir = tmp_path / "judge"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(judge_dir, safe_serialization=True)
    tok.save_pretrained(judge_dir)
    spec = EvalSpec(models=[f"base:{quickstart.name}", f"run:{quickstart.name}"],
                    tasks=[TaskSpec(name="judged", kind="judge", data=TEST_FILE, judge=str(judge_dir), max_examples=12)],
                    settings=EvalSettings(max_new_tokens=4, bootstrap=0))
    summary, eval_dir = evaluate(spec, runs)
    rows = [r for r in background.read_examples(eval_dir) if r["task"] == "judged"]
    judge = load_reward_model(judge_dir)
    prompts = [[m for m in json.loads(line)["messages"][:-1]] for line in Path(TEST_FILE).read_text().splitlines()[:12]]
    base, tuned = summary["models"]
    by = {m: sorted((r for r in rows if r["model"] == m), key=lambda r: r["i"]) for m in (base, tuned)}
    for m in (base, tuned):
        want = judge(prompts=prompts, completions=[r["output"] for r in by[m]])
        assert [r["scores"]["reward"] for r in by[m]] == pytest.approx(want, abs=1e-5)
    wins = [1.0 if b["scores"]["reward"] > a["scores"]["reward"] else 0.5 if b["scores"]["reward"] ==
            a["scores"]["reward"] else 0.0 for a, b in zip(by[base], by[tuned])]
    assert summary["scores"]["judged"][tuned]["win_rate"]["value"] == pytest.approx(sum(wins) / len(wins))
