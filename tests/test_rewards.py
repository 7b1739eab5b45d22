"""Reward presets score hand-made completions as trl would pass them."""
import pickle

import pytest

from studio import rewards
from studio.rewards import PRESETS, get_reward


def _as_messages(texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


REPLIES = ["9", " 9\n", "The answer is 9.", "8", "nine", "", "12 apples", "-3"]
ANSWERS = ["9", "9", "9", "9", "9", "9", "12", "-3"]


@pytest.mark.parametrize("wrap", [list, _as_messages], ids=["strings", "messages"])
def test_exact_match(wrap):
    scores = get_reward("exact_match")(wrap(REPLIES), answer=ANSWERS, prompts=["p"] * 8)
    assert scores == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("wrap", [list, _as_messages], ids=["strings", "messages"])
def test_format(wrap):
    scores = get_reward("format")(wrap(REPLIES))
    assert scores == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("wrap", [list, _as_messages], ids=["strings", "messages"])
def test_length_penalty_is_proportional(wrap):
    scores = get_reward("length_penalty")(wrap(["", "9", "12345", "x" * 100]))
    assert scores == pytest.approx([0.0, -0.01, -0.05, -1.0])


def test_message_content_parts_and_several_messages():
    completion = [{"role": "assistant", "content": [{"type": "text", "text": "4"}]},
                  {"role": "assistant", "content": "2"}]
    assert rewards.completion_text(completion) == "42"
    assert get_reward("exact_match")([completion], answer=["42"]) == [1.0]


def test_exact_match_without_answers_says_what_is_missing():
    with pytest.raises(ValueError, match="answer"):
        get_reward("exact_match")(["9"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        get_reward("exact_match")(["9", "8"], answer=["9"])


def test_none_answer_row_scores_zero():
    assert get_reward("exact_match")(["9", "9"], answer=[None, "9"]) == [0.0, 1.0]


def test_unknown_reward_names_the_field():
    with pytest.raises(ValueError, match=r"method\.reward.*exact_match"):
        get_reward("exactmatch")
    with pytest.raises(ValueError, match=r"method\.reward.*reward model"):
        get_reward("model:runs/rm-1")
    assert rewards.is_model_reward("model:runs/rm-1")
    assert not rewards.is_model_reward("exact_match")


def test_registry_names_match_function_names_and_pickle():
    # trl logs rewards/<__name__>/mean and pickles reward functions for workers
    for name, (fn, description) in PRESETS.items():
        assert fn.__name__ == name and description
        assert pickle.loads(pickle.dumps(fn)) is fn


@pytest.mark.parametrize("wrap", [list, _as_messages], ids=["strings", "messages"])
def test_closeness_gives_partial_credit_by_distance(wrap):
    scores = get_reward("closeness")(wrap(REPLIES), answer=ANSWERS)
    # 9 / 9 / "is 9." / 8 (one off) / no number / empty / 12 / -3
    assert scores == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 1.0, 1.0])
    assert get_reward("closeness")(["4", "15"], answer=["12", "12"]) == pytest.approx([1 / 9, 1 / 4])


def test_several_rewards_are_named_by_commas_and_unknown_ones_are_listed():
    from studio.spec import comma_list

    assert comma_list(" exact_match, closeness ,") == ["exact_match", "closeness"]
    assert rewards.unknown_rewards("exact_match, bogus, model:runs/rm") == ["bogus"]
    assert rewards.unknown_rewards("") == []
