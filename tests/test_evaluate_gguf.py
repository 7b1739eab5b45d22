"""A GGUF file as an evaluation model: the quickstart run exported to q8_0 (the fixture
of test_ship_gguf), its exact match on held-out prompts next to the run's, and the
export-parity preset run vs GGUF agreeing with the parity check `studio export` wrote.
Log-likelihood tasks on a GGUF and a GGUF without its runtime are refused before work."""
from __future__ import annotations

import json

import pytest

from studio.evaluate import background, checks, presets
from studio.evaluate.runner import run_eval
from studio.evaluate.spec import EvalSettings, EvalSpec, TaskSpec
from studio.ship import gguf
from tests.test_ship_gguf import exported, quickstart_run  # noqa: F401 - the same fixtures, not a second recipe

TEST_FILE = "assets/data/arith_sft_test.jsonl"
GGUF_READY = pytest.mark.skipif(  # the converter makes the file, the runtime reads it
    gguf.tools_dir() is None or gguf.runtime_version() is None,
    reason="GGUF parts not installed: `bash scripts/setup.sh --gguf` builds them")


def _evaluate(spec: EvalSpec, runs) -> tuple[dict, list[dict]]:
    eval_dir = background.create(spec, runs)
    return run_eval(eval_dir, runs), background.read_examples(eval_dir)


@pytest.mark.slow
@GGUF_READY
def test_the_gguf_is_evaluated_beside_its_run_and_agrees_with_the_parity_check(quickstart_run, exported):
    out, _lines = exported
    path = str(out / "model-q8_0.gguf")
    runs, run = quickstart_run.parent, quickstart_run.name
    # the prompts and length the export's parity check used (its first 20 held-out prompts, 32 tokens)
    settings = EvalSettings(max_new_tokens=32, batch_size=1, device="cpu")
    spec = EvalSpec(name="em", models=[f"run:{run}", path], settings=settings,
                    tasks=[TaskSpec(name="answers", kind="generate", data=TEST_FILE, metrics=["exact_match"],
                                    max_examples=20)])
    summary, rows = _evaluate(spec, runs)
    label = out.joinpath("model-q8_0.gguf").name
    em = {m: summary["scores"]["answers"][m]["exact_match"]["value"] for m in (run, label)}
    print(f"\nexact match: {em}")
    assert summary["failed_examples"] == 0
    assert em[run] >= 0.15  # the shortened run (120 steps) answers some held-out sums: the scores mean something
    by = {m: {r["i"]: r for r in rows if r["model"] == m} for m in (run, label)}
    assert len(by[label]) == 20 and all(r["output"] for r in by[label].values())

    parity, prows = _evaluate(presets.export(run, path, prompts=TEST_FILE, max_examples=20, settings=settings), runs)
    verdict = parity["parity"]["export parity"][label]
    agree = {r["i"]: r["scores"]["agreement"] for r in prows if r["model"] == label}
    written = json.loads((out / "model-q8_0.gguf.parity.json").read_text())
    print(f"eval parity: {verdict['agreement']}, export parity: {written['agreement']}, "
          f"mismatches {verdict['mismatches'][:1]} vs {written['first_difference']}")
    # where the two models gave the same reply their exact match is the same; the scores
    # can differ only by the share of prompts that disagree
    for i, same in agree.items():
        if same:
            assert by[run][i]["output"] == by[label][i]["output"]
            assert by[run][i]["scores"] == by[label][i]["scores"]
    assert abs(em[run] - em[label]) <= 1 - verdict["agreement"] + 1e-9
    # the same verdict and the same first differing token as `studio export`'s own check,
    # which fed both models the studio's prompt ids (here the GGUF formats and tokenises itself)
    assert (verdict["agreement"] == 1.0) == (written["agreement"] == 1.0)
    assert verdict["passed"] == (written["agreement"] == 1.0)
    if written["first_difference"]:
        first, mine = written["first_difference"], verdict["mismatches"][0]
        assert (mine["i"], mine["position"]) == (first["prompt"], first["position"])
        assert (mine["a_token"], mine["b_token"]) == (first["hf"], first["gguf"])
    assert verdict["agreement"] >= 0.9  # q8_0 of a tiny model follows it (the export test's own bar is 0.95 of tokens)


@pytest.mark.slow
@GGUF_READY
def test_log_likelihood_tasks_on_a_gguf_are_refused_by_field(quickstart_run, exported):
    out, _ = exported
    path = str(out / "model-q8_0.gguf")
    runs = quickstart_run.parent
    before = sorted(runs.rglob("summary.json"))
    for kind, data in (("loss", TEST_FILE), ("choice", presets.GENERAL_PROBE)):
        spec = EvalSpec(models=[f"run:{quickstart_run.name}", path], tasks=[TaskSpec(kind=kind, data=data)])
        with pytest.raises(ValueError) as err:
            background.create(spec, runs)
        assert f"tasks[0] ({kind}).kind: '{kind}'" in str(err.value) and "log-likelihoods" in str(err.value)
        assert "models[1]" in str(err.value) and "merged folder" in str(err.value)
    assert sorted(runs.rglob("summary.json")) == before  # nothing evaluated


def test_a_gguf_without_its_runtime_is_refused_naming_the_fix(tmp_path, monkeypatch):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(gguf, "runtime_version", lambda: None)
    spec = EvalSpec(models=[str(fake)], tasks=[TaskSpec(kind="generate", data=TEST_FILE)])
    with pytest.raises(ValueError, match=r"models\[0\]: .*llama.cpp's runtime .* not installed; run "
                                         r"`bash scripts/setup.sh --gguf`"):
        checks.plan(spec)
    not_gguf = tmp_path / "n.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(ValueError, match=r"models\[0\]: .*is not a GGUF file"):
        checks.plan(EvalSpec(models=[str(not_gguf)], tasks=[TaskSpec(kind="generate", data=TEST_FILE)]))
    with pytest.raises(ValueError, match=r"models\[0\]: .*does not exist"):
        checks.plan(EvalSpec(models=[str(tmp_path / "gone.gguf")], tasks=[TaskSpec(kind="generate", data=TEST_FILE)]))
