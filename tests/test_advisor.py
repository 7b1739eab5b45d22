"""The advisor's chart, path by path: every leaf is reached, every registry method is
recommended by some input, reasons are never empty, disagreements between method and
data are warned with a fix, the recipe is a valid spec, and the CLI prints it."""
from __future__ import annotations

import json

import pytest
import yaml

from studio import advisor
from studio.advisor import Answers, advise, check_choice, children
from studio.methods import REGISTRY, table
from studio.spec import ModelSpec, RunSpec, SpecError

GB = 1024**3
BIG = dict(goal="instructions", data_kind="conversation", from_scratch=False)

# one input per leaf of the chart: the leaf id it must reach
LEAF_INPUTS = {
    "sft": Answers(goal="instructions"),
    "sft_first": Answers(goal="preferences", data_kind="conversation"),
    "dpo": Answers(goal="preferences", data_kind="preference"),
    "orpo": Answers(goal="preferences", data_kind="preference", model_is_base=True),
    "simpo": Answers(goal="preferences", data_kind="preference", wants="reference_free"),
    "reward": Answers(goal="preferences", data_kind="preference", wants="control"),
    "kto": Answers(data_kind="unpaired"),
    "grpo_pref": Answers(goal="preferences", data_kind="prompt"),
    "grpo_pref_rm": Answers(goal="preferences", data_kind="prompt", has_reward_model=True),
    "ppo_pref": Answers(goal="preferences", data_kind="preference", has_reward_model=True, wants="control"),
    "cpt": Answers(goal="domain", data_kind="text", from_scratch=False),
    "pretrain": Answers(data_kind="text", from_scratch=True),
    "grpo": Answers(goal="reasoning", data_kind="prompt"),
    "grpo_rm": Answers(goal="reasoning", has_reward_model=True),
    "ppo": Answers(goal="reasoning", has_reward_model=True, wants="control"),
    "sft_solutions": Answers(goal="reasoning", data_kind="conversation", checkable=False),
    "distill": Answers(goal="distill"),
    "full_scratch": Answers(goal="instructions", from_scratch=True),
    "prompt": Answers(**BIG, data_rows=50, model_size_params=7_000_000_000),
    "lora_unknown": Answers(**BIG),
    "full": Answers(**BIG, memory_needed_full_bytes=10 * GB, device_memory_bytes=24 * GB),
    "freeze": Answers(**BIG, memory_needed_full_bytes=22 * GB, device_memory_bytes=24 * GB),
    "dora": Answers(**BIG, memory_needed_full_bytes=100 * GB, memory_needed_lora_bytes=8 * GB,
                    memory_needed_qlora_bytes=4 * GB, device_memory_bytes=24 * GB),
    "lora": Answers(**BIG, memory_needed_full_bytes=100 * GB, memory_needed_lora_bytes=16 * GB,
                    memory_needed_qlora_bytes=6 * GB, device_memory_bytes=24 * GB),
    "qlora": Answers(**BIG, memory_needed_full_bytes=100 * GB, memory_needed_lora_bytes=30 * GB,
                     memory_needed_qlora_bytes=10 * GB, device_memory_bytes=24 * GB),
    "too_big": Answers(**BIG, memory_needed_full_bytes=100 * GB, memory_needed_lora_bytes=60 * GB,
                       memory_needed_qlora_bytes=30 * GB, device_memory_bytes=24 * GB),
}


def leaves() -> set[str]:
    return {n.id for n in advisor.NODE_LIST if not children(n.id)}


def test_the_inputs_cover_every_leaf():
    assert set(LEAF_INPUTS) == leaves()


@pytest.mark.parametrize("leaf", sorted(LEAF_INPUTS))
def test_each_leaf_is_reached_by_its_input(leaf):
    advice = advise(LEAF_INPUTS[leaf])
    assert leaf in advice.node_ids()
    node = advisor.NODES[leaf]
    if node.kind == "method":
        assert advice.method == node.value
    else:
        assert advice.regime == advisor.supported_regime(advice.method, node.value)


def test_every_registry_method_is_recommended_by_some_input():
    recommended = {advise(a).method for a in LEAF_INPUTS.values()}
    assert recommended == set(REGISTRY)


@pytest.mark.parametrize("leaf", sorted(LEAF_INPUTS))
def test_paths_are_connected_and_every_step_has_a_reason(leaf):
    advice = advise(LEAF_INPUTS[leaf])
    path = advice.path
    assert path[0].node_id == "goal"
    kinds = [advisor.NODES[s.node_id].kind for s in path]
    assert kinds.count("method") == 1 and kinds[-1] == "regime"
    for step, nxt in zip(path, path[1:]):
        assert step.reason.strip(), step
        if advisor.NODES[step.node_id].kind == "question":
            assert advisor.child(step.node_id, step.choice).id == nxt.node_id
    assert path[-1].reason.strip()
    assert advice.runner_up.method in REGISTRY and advice.runner_up.method != advice.method
    assert advice.runner_up.why and advice.regime_runner_up[1]
    assert advice.regime in REGISTRY[advice.method].regimes
    assert advice.runner_up.regime in REGISTRY[advice.runner_up.method].regimes


def test_memory_thresholds_are_the_planning_limit():
    at_limit = Answers(**BIG, memory_needed_full_bytes=int(0.85 * 24 * GB), device_memory_bytes=24 * GB)
    assert advise(at_limit).regime == "full"
    over = Answers(**BIG, memory_needed_full_bytes=int(0.85 * 24 * GB) + 1, device_memory_bytes=24 * GB)
    advice = advise(over)
    assert advice.regime == "freeze"
    memory_step = next(s for s in advice.path if s.node_id == "memory")
    assert "20.4 GB of 24.0 GB" in memory_step.reason


def test_methods_without_freeze_or_qlora_get_the_nearest_regime_they_support():
    # GRPO has no freeze: a barely-fitting full run goes to an adapter instead
    tight = Answers(goal="reasoning", data_kind="prompt", from_scratch=False, memory_needed_full_bytes=22 * GB,
                    memory_needed_lora_bytes=5 * GB, memory_needed_qlora_bytes=2 * GB, device_memory_bytes=24 * GB)
    assert advise(tight).regime == "dora"
    # PPO has no QLoRA: the advice says so and points to GRPO, which has it
    ppo = Answers(goal="reasoning", has_reward_model=True, wants="control", from_scratch=False,
                  memory_needed_full_bytes=100 * GB, memory_needed_lora_bytes=30 * GB,
                  memory_needed_qlora_bytes=10 * GB, device_memory_bytes=24 * GB)
    advice = advise(ppo)
    assert advice.method == "ppo" and advice.regime == "lora"
    codes = {w.code: w for w in advice.warnings}
    assert codes["regime_unsupported"].apply == {"method.name": "grpo", "method.regime": "qlora"}


def test_parameter_count_alone_fills_in_the_memory_figures():
    seven_b = Answers(goal="instructions", from_scratch=False, model_size_params=7_000_000_000,
                      device_memory_bytes=24 * GB)
    assert advise(seven_b).regime == "lora"  # 16 B/param full is 104 GB; 16-bit LoRA ~14 GB
    assert advise(Answers(goal="instructions", from_scratch=False, model_size_params=7_000_000_000,
                          device_memory_bytes=12 * GB)).regime == "qlora"
    assert advise(Answers(goal="instructions", from_scratch=False, model_size_params=100_000_000,
                          device_memory_bytes=24 * GB)).regime == "full"


def test_simpo_when_full_training_fits_but_a_reference_copy_does_not():
    answers = Answers(goal="preferences", data_kind="preference", from_scratch=False,
                      model_size_params=1_000_000_000, memory_needed_full_bytes=19 * GB,
                      device_memory_bytes=24 * GB)
    advice = advise(answers)
    assert advice.method == "simpo" and advice.regime == "full"
    answers.memory_needed_full_bytes = 12 * GB  # room for the 2 GB reference copy
    assert advise(answers).method == "dpo"


def test_goal_is_inferred_from_the_data_when_not_given():
    assert advise(Answers(data_kind="preference")).method == "dpo"
    assert advise(Answers(data_kind="prompt")).method == "grpo"
    assert advise(Answers(data_kind="text", from_scratch=False)).method == "cpt"
    assert advise(Answers(data_kind="conversation")).method == "sft"
    assert advise(Answers()).method == "sft"


def test_warnings_for_dpo_without_pairs_with_the_fix():
    warnings = check_choice("dpo", "conversation", None)
    assert [w.code for w in warnings] == ["needs_pairs"]
    assert warnings[0].level == "error" and warnings[0].apply == {"method.name": "sft"}
    assert "preference pairs" in warnings[0].message
    unpaired = check_choice("dpo", "unpaired")
    assert unpaired[0].apply == {"method.name": "kto"} and "KTO" in unpaired[0].fix
    for name in ("orpo", "simpo", "reward"):
        assert check_choice(name, "prompt")[0].code == "needs_pairs"
    assert check_choice("dpo", "preference") == []


def test_warnings_for_grpo_without_reward_and_ppo_without_reward_model():
    for reward in (None, "", False):
        grpo = check_choice("grpo", "prompt", reward)
        assert [w.code for w in grpo] == ["no_reward"]
        assert grpo[0].apply == {"method.reward": "exact_match"}
    assert check_choice("grpo", "prompt", "exact_match") == []
    ppo = check_choice("ppo", "prompt", "exact_match")
    assert [w.code for w in ppo] == ["ppo_without_reward_model"]
    assert "reward model" in ppo[0].fix and ppo[0].apply == {"method.name": "grpo"}
    assert check_choice("ppo", "prompt", "model:runs/rm/final") == []
    assert check_choice("ppo", "prompt", None)[0].code == "no_reward"


def test_converted_data_is_information_not_an_error():
    sft = check_choice("sft", "preference")
    assert [(w.code, w.level) for w in sft] == [("data_converted", "info")]
    assert check_choice("cpt", "conversation")[0].code == "needs_text"
    assert check_choice("kto", "text")[0].code == "needs_labels"
    assert check_choice("nope", "text")[0].code == "unknown_method"


def test_advice_warnings_for_the_paths_that_need_them():
    codes = lambda leaf: {w.code for w in advise(LEAF_INPUTS[leaf]).warnings}  # noqa: E731
    assert "no_preference_data" in codes("sft_first")
    assert "does_not_fit" in codes("too_big")
    assert "memory_unknown" in codes("lora_unknown")
    assert codes("dpo") == {"memory_unknown"}  # nothing wrong with DPO on pairs
    scratch_dpo = advise(Answers(goal="preferences", data_kind="preference", from_scratch=True, wants="simplicity"))
    assert "needs_pretrained" in {w.code for w in scratch_dpo.warnings}
    base_dpo = advise(Answers(goal="preferences", data_kind="preference", model_is_base=True, wants="simplicity"))
    assert {w.code: w.apply for w in base_dpo.warnings}["base_model"] == {"method.name": "orpo"}


def test_bad_answers_name_the_field():
    with pytest.raises(SpecError, match="advisor.goal"):
        advise(Answers(goal="world_peace"))
    with pytest.raises(SpecError, match="data_kind"):
        advise(Answers(data_kind="images"))


def test_questions_fill_real_answer_fields():
    fields = set(Answers.__dataclass_fields__)
    for q in advisor.questions():
        assert q.field in fields and q.text and q.help
        if q.kind == "choice":
            allowed = {"goal": advisor.GOALS, "data_kind": advisor.DATA_KINDS, "wants": advisor.WANTS}[q.field]
            assert {v for v, _ in q.choices} - {None} == set(allowed)
        elif q.kind == "bool":
            assert [v for v, _ in q.choices] == [True, False, None]


def test_method_table_is_the_registry_table():
    assert advisor.method_table() == table()


# -- recipe ---------------------------------------------------------------------------


def test_sizes_file_matches_the_seed_quick_reference():
    sizes = advisor.load_sizes()
    by_name = {b["name"]: b["phases"] for b in sizes["buckets"]}
    assert by_name["small"]["sft"]["learning_rate"] == 1e-5 and by_name["large"]["base"]["grad_accum"] == 128
    assert set(sizes["method_phase"]) == set(REGISTRY)


def test_recipe_values():
    small_sft = advisor.recipe("sft", "full", "small")
    assert small_sft["train.learning_rate"] == 1e-5 and small_sft["train.batch_size"] == 4
    assert small_sft["train.grad_accum"] == 16
    assert advisor.recipe("sft", "lora", "large")["train.learning_rate"] == 1e-4  # seed: LoRA 1e-4
    qlora = advisor.recipe("sft", "qlora", "medium")
    assert qlora["train.learning_rate"] == 2e-4 and qlora["method.lora_r"] == 64
    assert advisor.recipe("dpo", "full", "large")["train.learning_rate"] == 5e-7  # the DPO card
    assert advisor.recipe("dpo", "lora", "large")["train.learning_rate"] == 5e-6
    assert advisor.recipe("pretrain", "full", "tiny")["data.packing"] is True
    ppo = advisor.recipe("ppo", "full", "medium")
    assert (ppo["train.batch_size"], ppo["method.mini_batch_size"]) == (128, 32)
    grpo = advisor.recipe("grpo", "full", "medium")
    assert grpo["train.batch_size"] * grpo["train.grad_accum"] == 128


def test_size_buckets():
    assert advisor.size_bucket(1_000_000) == "tiny"
    assert advisor.size_bucket(124_000_000) == "small"
    assert advisor.size_bucket(1_500_000_000) == "medium"
    assert advisor.size_bucket(70_000_000_000) == "large"
    assert advisor.size_bucket(None, from_scratch=True) == "tiny"


def test_every_recipe_makes_a_valid_spec():
    base = RunSpec(model=ModelSpec(source="pretrained", name_or_path="some/model"))
    sizes = advisor.load_sizes()
    for name, method in REGISTRY.items():
        for regime in method.regimes:
            for bucket in ("tiny", "small", "medium", "large"):
                fields = advisor.recipe(name, regime, bucket, sizes)
                spec = advisor.apply_recipe(base, fields)
                bad = [p for p in spec.validate() if p.field.startswith(("method.", "train."))
                       and p.field not in ("method.reward", "method.teacher")]
                assert not bad, (name, regime, bucket, bad)
                assert spec.method.name == name and spec.method.regime == regime
                assert spec.train.learning_rate == fields["train.learning_rate"] > 0


# -- what the studio infers -------------------------------------------------------------


def test_infer_answers_from_the_quickstart_spec():
    from studio.presets import default_spec

    spec = default_spec()
    answers = advisor.infer_answers(spec, "conversation", device_memory_gb=16)
    assert answers.from_scratch is True and answers.model_is_base is True
    assert answers.device_memory_bytes == 16 * GB
    assert answers.model_size_params and answers.model_size_params < 30_000_000
    advice = advise(answers)
    assert (advice.method, advice.regime, advice.size_bucket) == ("sft", "full", "tiny")


def test_infer_answers_takes_the_model_tabs_estimate_for_its_own_regime():
    spec = RunSpec(model=ModelSpec(source="pretrained", name_or_path="org/Model-7B-Instruct"))
    spec.method.regime = "lora"
    estimate = {"parameters": 7_000_000_000, "memory_bytes": {"total": 18 * GB}}
    answers = advisor.infer_answers(spec, estimate=estimate, device_memory_gb=80)
    assert answers.memory_needed_lora_bytes == 18 * GB
    assert answers.model_size_params == 7_000_000_000
    assert answers.model_is_base is False and answers.from_scratch is False


def test_base_or_instruct_from_name_run_and_template(tmp_path):
    guess = lambda name: advisor.guess_model_is_base(ModelSpec(source="pretrained", name_or_path=name))[0]  # noqa: E731
    assert guess("Qwen/Qwen2.5-0.5B-Instruct") is False
    assert guess("meta-llama/Llama-3.1-8B-base") is True
    assert guess("gpt2") is None
    run = tmp_path / "run1"
    (run / "final").mkdir(parents=True)
    (run / "spec.yaml").write_text(yaml.safe_dump({"method": {"name": "pretrain"}}))
    assert guess(str(run / "final")) is True
    (run / "spec.yaml").write_text(yaml.safe_dump({"method": {"name": "sft"}}))
    assert guess(str(run / "final")) is False
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    assert guess(str(folder)) is True
    assert advisor._params_from_name("HuggingFaceTB/SmolLM2-135M") == 135_000_000
    assert advisor._params_from_name("Qwen/Qwen2.5-0.5B") == 500_000_000


@pytest.mark.parametrize("file,kind", [
    ("arith_prefs_train.jsonl", "preference"), ("arith_kto_train.jsonl", "unpaired"),
    ("arith_prompts_train.jsonl", "prompt"), ("arith_sft_train.jsonl", "conversation"),
    ("corpus_train.jsonl", "text")])
def test_data_kind_of_the_shipped_files(file, kind):
    found, rows, how = advisor.detect_data_kind(f"assets/data/{file}")
    assert found == kind and how
    assert rows == sum(1 for line in open(f"assets/data/{file}") if line.strip())


def test_column_guess_when_studio_data_is_missing(tmp_path):
    assert advisor._kind_by_columns([{"prompt": "a", "chosen": "b", "rejected": "c"}]) == "preference"
    assert advisor._kind_by_columns([{"prompt": "a", "completion": "b", "label": True}]) == "unpaired"
    assert advisor._kind_by_columns([{"question": "a"}]) == "prompt"
    assert advisor._kind_by_columns([{"foo": 1}]) is None
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text\nhello\nworld\n")
    assert advisor._sample_rows(csv_file) == ([{"text": "hello"}, {"text": "world"}], 2)
    parquet = tmp_path / "d.parquet"
    parquet.write_bytes(b"PAR1")
    kind, rows, how = advisor.detect_data_kind(parquet)
    assert kind is None and "give the data kind yourself" in how


# -- CLI ----------------------------------------------------------------------------------


def run_cli(capsys, *args) -> tuple[int, str]:
    from studio.cli import main

    code = main(["advise", *args])
    return code, capsys.readouterr().out


def test_cli_json(capsys):
    code, out = run_cli(capsys, "--goal", "preferences", "--data", "assets/data/arith_prefs_train.jsonl",
                        "--model", "org/Model-7B-Instruct", "--device-memory-gb", "24", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"method", "regime", "path", "runner_up"} <= set(data)
    assert (data["method"], data["regime"]) == ("dpo", "lora")
    assert data["path"][0]["node_id"] == "goal" and all(s["reason"] for s in data["path"])
    assert data["runner_up"]["method"] == "simpo"
    assert data["answers"]["data_kind"] == "preference" and data["answers"]["data_rows"] == 1271


def test_cli_text_and_errors(capsys):
    code, out = run_cli(capsys, "--goal", "reasoning", "--device-memory-gb", "8")
    assert code == 0
    assert "Recommended: GRPO" in out and "Runner-up: PPO" in out and "What scores answers?" in out
    code, _ = run_cli(capsys, "--data", "no/such/file.jsonl")
    assert code == 2
