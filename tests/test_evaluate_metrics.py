"""The evaluation's metrics and spec without models: each text metric on right, wrong and
malformed replies (ROUGE-L and BLEU from their reference packages), bootstrap intervals
(token-weighted for loss), the YAML round trip and refusals by field."""
from __future__ import annotations

import math

import pytest

from studio.evaluate import metrics, report
from studio.evaluate.spec import EvalSettings, EvalSpec, TaskSpec
from studio.spec import SpecError


@pytest.mark.parametrize("name, reply, ref, kw, want", [
    ("exact_match", "The Answer: 16.", "answer 16", {}, 1.0),
    ("exact_match", "16 apples", "16", {}, 0.0),
    ("contains", "I think it is 16.", "16", {}, 1.0),
    ("contains", "", "16", {}, 0.0),
    ("regex", "so the result = 42!", "42", {"pattern": r"=\s*(\d+)"}, 1.0),
    ("regex", "no number", "42", {"pattern": r"=\s*(\d+)"}, 0.0),
    ("numeric", "about 3.1416", "3.14159", {"tolerance": 1e-3}, 1.0),
    ("numeric", "1,000 exactly", "1000", {}, 1.0),
    ("numeric", "seven", "7", {}, 0.0),
    ("json_valid", '{"city": "Lima"}', None, {}, 1.0),
    ("json_valid", '{"city": Lima}', None, {}, 0.0),
])
def test_text_metrics(name, reply, ref, kw, want):
    assert metrics.TEXT_METRICS[name](reply, ref, **kw) == want


def test_rouge_and_bleu_are_the_reference_implementations():
    import sacrebleu
    from rouge_score import rouge_scorer

    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    assert metrics.rouge_l(hyp, ref) == pytest.approx(
        rouge_scorer.RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure)
    assert metrics.bleu(hyp, ref) == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100)
    assert metrics.rouge_l(ref, ref) == 1.0 and metrics.bleu("", ref) == 0.0


def test_loss_is_token_weighted_and_its_interval_holds_the_value():
    rows = [{"nll": 2.0, "tokens": 1}, {"nll": 10.0, "tokens": 10}, {"nll": 3.0, "tokens": 3}] * 5
    agg = metrics.aggregate(rows, "loss", EvalSettings(bootstrap=500))
    assert agg["value"] == pytest.approx(15 / 14)  # not the mean of per-example means (1.33)
    assert agg["ci_low"] <= agg["value"] <= agg["ci_high"] and agg["tokens"] == 70
    ppl = metrics.aggregate(rows, "perplexity", EvalSettings(bootstrap=0))
    assert ppl["value"] == pytest.approx(math.exp(15 / 14)) and ppl["ci_low"] is None


def test_failed_examples_are_counted_apart():
    rows = [{"scores": {"acc": 1.0}}, {"scores": {"acc": 0.0}}, {"error": "boom"}]
    agg = metrics.aggregate(rows, "acc", EvalSettings(bootstrap=0))
    assert agg == {"value": 0.5, "ci_low": None, "ci_high": None, "n": 2, "failed": 1}


def test_spec_round_trips_and_refuses_by_field(tmp_path):
    spec = EvalSpec(name="x", models=["run:a", "base:a"],
                    tasks=[TaskSpec(name="g", kind="generate", data="f.jsonl", metrics=["bleu", "rouge_l"])])
    spec.save(tmp_path / "e.yaml")
    assert EvalSpec.load(tmp_path / "e.yaml") == spec
    with pytest.raises(SpecError, match=r"tasks\[0\]: unknown field\(s\) \['metric'\]"):
        EvalSpec.from_dict({"models": ["a"], "tasks": [{"kind": "loss", "metric": "x"}]})
    problems = EvalSpec(models=[], tasks=[TaskSpec(kind="choice", data="f", metrics=["bleu"]),
                                          TaskSpec(kind="generate", data="f", metrics=["regex"]),
                                          TaskSpec(kind="sorting", data="f")]).validate()
    text = "\n".join(problems)
    assert "models: name at least one model" in text
    assert "'bleu' does not fit a choice task (bleu is a metric of generate tasks)" in text
    assert "tasks[1].pattern" in text and "tasks[2].kind: 'sorting'" in text


def test_a_hub_id_missing_from_the_offline_cache_is_refused(monkeypatch):
    from studio.evaluate.models import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not in the local hub cache"):
        resolve("nobody-here/no-such-model-xyz")


def test_drop_past_threshold_and_the_regressions_filter():
    assert report.dropped("acc", -0.10, 0.05) and not report.dropped("acc", -0.01, 0.05)
    assert report.dropped("loss", 0.2, 0.05) and not report.dropped("loss", -0.2, 0.05)
    rows = [{"task": "t", "model": m, "i": i, "input": "q", "reference": "1", "output": o,
             "scores": {"exact_match": s}} for m, i, o, s in
            [("A", 0, "1", 1.0), ("B", 0, "2", 0.0), ("A", 1, "1", 1.0), ("B", 1, "1", 1.0),
             ("A", 2, "3", 0.0), ("B", 2, "1", 1.0)]]
    assert [r[0] for r in report.ab_table(rows, "t", "A", "B", only_regressions=True)] == [0]
    assert len(report.ab_table(rows, "t", "A", "B")) == 3


def test_a_cached_hub_revision_is_accepted_and_another_refused(tmp_path, monkeypatch):
    # the evaluation asks the cache as the loader does (studio.hub): revision and HF_HUB_CACHE count
    from studio.evaluate.models import resolve
    from tests.test_hub_offline import put_in_cache

    root = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    put_in_cache(root, "model", "acme/tiny", {"config.json": b"{}"}, "a" * 40, ref="v1")
    assert resolve("acme/tiny@v1").kind == "path"
    with pytest.raises(ValueError, match="not in the local hub cache"):
        resolve("acme/tiny@v2")
