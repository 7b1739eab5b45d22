"""The advisor's chart, path by path: every leaf is reached, every registry method is
recommended by some input, reasons are never empty, memory decides the regime, the
advice carries the warnings its path needs, and the questions fill real answers."""
from __future__ import annotations

import pytest

from studio import advisor
from studio.advisor import Answers, advise, children
from studio.methods import REGISTRY, table
from studio.spec import SpecError
from tests.conftest import BIG, GB, LEAF_INPUTS

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
    assert "20.4 GiB of 24.0 GiB" in memory_step.reason


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
