"""A chosen method against the data and reward: each mismatch is warned, with the fix and
the spec fields that carry it out; converted data is a note, not an error."""
from __future__ import annotations

from studio.advisor import check_choice

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
