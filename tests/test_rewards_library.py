"""The reward library on hand-written completions: right, wrong and malformed replies
per reward, the spec grammar, validation by field, the sandbox and user files."""
import os
import time

import pytest

from studio.rewards import build, parse, to_text
from studio.rewards.checks import data_problems, reward_problems
from studio.spec import RunSpec


def score(reward, completions, answer=None):
    funcs, weights = build(reward)
    assert len(funcs) == 1
    return funcs[0](completions, answer=answer, prompts=["p"] * len(completions))


def test_match_normalised_and_exact():
    got = score("match", ["<think>hmm</think> The Cat.", "dog", "", "the  cat"], ["the cat"] * 4)
    assert got == [1.0, 0.0, 0.0, 1.0]
    assert score("match:normalize=false", ["The Cat.", "the cat"], ["the cat"] * 2) == [0.0, 1.0]


def test_numeric_with_tolerance():
    replies = ["It is 3.14", "3.2", "no number", "1,000", "-2"]
    assert score("numeric:tol=0.01", replies, ["3.141", "3.141", "3", "1000", "-2"]) == [1, 0, 0, 1, 1]
    assert score("numeric:tol=0.1", ["3.2"], ["3.141"]) == [1.0]


def test_math_equivalence():
    replies = ["$\\frac{1}{2}$", "The answer is 0.5", "\\boxed{2/4}", "0.3", "garbage {{"]
    assert score("math_equiv", replies, ["1/2"] * 5) == [1, 1, 1, 0, 0]


def test_contains_and_regex_and_choice():
    assert score("contains", ["Paris is big", "Lyon", ""], ["paris"] * 3) == [1, 0, 0]
    assert score("contains:text=please", ["Please do", "do it"]) == [1, 0]
    assert score('regex:pattern="^\\d{3}-\\d{4}$",full=true', ["555-1234", "555-12345", "abc"]) == [1, 0, 0]
    assert score("regex:pattern=hello,flags=i", ["HeLLo there", "bye"]) == [1, 0]
    assert score("choice", ["The answer is (B)", "A) because", "C", "none of them"], ["B", "B", "C", "A"]) \
        == [1, 0, 1, 0]


def test_think_format():
    replies = ["<think>2 and 2</think> 4", "4", "<think>unfinished 4", "<think>x</think>", "<think></think> 4"]
    assert score("think_format", replies) == [1, 0, 0, 0, 0]


def test_json_valid_schema_and_match():
    replies = ['{"city": "Oslo", "days": 3}', '```json\n{"city": "Oslo"}\n```', "{city: Oslo}", "[1, 2]"]
    assert score("json_valid", replies) == [1, 1, 0, 0]
    schema = '{"type":"object","properties":{"days":{"type":"integer"}},"required":["city","days"]}'
    assert score(f"json_schema:schema={schema}", replies) == [1, 0, 0, 0]
    ref = ['{"city": "Oslo", "days": 3}'] * 4
    assert score("json_match", replies, ref) == [1.0, 0.5, 0.0, 0.0]
    assert score("json_match:partial=false", replies, ref) == [1.0, 0.0, 0.0, 0.0]


def test_tool_call_glaive_and_chatml():
    ref = ["<functioncall> {\"name\": \"add_numbers\", \"arguments\": '{\"a\": 1, \"b\": 2}'}"] * 4
    replies = ['<tool_call>{"name": "add_numbers", "arguments": {"b": 2, "a": 1}}</tool_call>',
               "<functioncall> {\"name\": \"add_numbers\", \"arguments\": '{\"a\": 1, \"b\": 5}'}",
               '<tool_call>{"name": "get_weather", "arguments": {"a": 1, "b": 2}}</tool_call>',
               "<functioncall> {broken"]
    assert score("tool_call", replies, ref) == [1.0, 0.5, 0.0, 0.0]
    assert score("tool_call:partial=false", replies, ref) == [1.0, 0.0, 0.0, 0.0]


def test_length_and_repetition():
    assert score("target_length:target=5,penalty=0.1", ["12345", "1", "1234567"]) == pytest.approx([0, -0.4, -0.2])
    assert score("target_length:target=2,unit=words", ["a b", "a b c d"]) == pytest.approx([0, -0.02])
    loop, fresh = "go to the shop " * 5, "the quick brown fox jumps over the lazy dog"
    got = score("repetition", [fresh, loop, ""])
    assert got[0] == 0.0 and got[1] < -0.5 and got[2] == 0.0


def test_code_tests_pass_fail_malformed_and_timeout():
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
    replies = ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a - b",
               "def add(a, b) return", "import socket\nsocket.create_connection(('1.1.1.1', 80))\n"
               "def add(a, b):\n    return a + b"]
    assert score("code_tests", replies, [tests] * 4) == [1.0, 0.0, 0.0, 0.0]
    start = time.monotonic()
    assert score("code_tests:timeout=1", ["while True:\n    pass"], ["assert True"]) == [0.0]
    assert time.monotonic() - start < 8  # stopped at the limit, not left running
    from studio.rewards.code import run_tests

    passed, why = run_tests("x = bytearray(2 * 1024**3)", "assert True", timeout=5, memory_mb=256)
    assert not passed and "MemoryError" in why


def test_weights_list_form_and_round_trip():
    funcs, weights = build("json_valid, 0.5*regex:pattern=\"a,b\",flags=i")
    assert [f.__name__ for f in funcs] == ["json_valid", "regex"] and weights == [1.0, 0.5]
    assert funcs[1](["xA,By"]) == [1.0]
    spec = RunSpec.from_yaml("method:\n  name: grpo\n  reward:\n    - {name: json_valid}\n"
                             "    - {name: regex, weight: 2, args: {pattern: '^\\{', flags: s}}\n")
    assert parse(spec.method.reward)[1].weight == 2.0
    assert RunSpec.from_yaml(spec.to_yaml()).method.reward == spec.method.reward
    assert to_text(parse("model:runs/rm-1")) == "model:runs/rm-1"
    two = build("regex:pattern=a, regex:pattern=b")[0]
    assert [f.__name__ for f in two] == ["regex", "regex_2"]  # distinct metrics in trl's logs


@pytest.mark.parametrize("reward, needle", [
    ("nope", "unknown reward 'nope'"),
    ("numeric:tol=abc", "tol='abc' is not a float"),
    ("numeric:tolerance=0.1", "no argument 'tolerance'"),
    ('regex:pattern="(unclosed"', "does not compile"),
    ("regex", "needs pattern"),
    ('json_schema:schema={"type": "objekt"}', "schema is not valid"),
    ("json_schema", "needs schema"),
    ("file:path=/no/such/reward.py", "no reward file"),
])
def test_bad_rewards_are_refused_naming_the_field(reward, needle):
    problems = reward_problems(reward)
    assert problems and problems[0][0] == "method.reward", problems
    assert needle in problems[0][1], problems


def test_user_file_errors_show_the_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import os\n\ndef reward(completions, **kw):\n    return [1.0] * len(completions\n")
    [(field, message)] = reward_problems(f"file:path={broken}")
    assert field == "method.reward" and "broken.py line 4" in message
    raising = tmp_path / "raising.py"
    raising.write_text("def reward(completions, **kw):\n    x = 1\n    return [1 / 0 for _ in completions]\n")
    assert "raising.py line 3: ZeroDivisionError" in reward_problems(f"file:path={raising}")[0][1]
    short = tmp_path / "short.py"
    short.write_text("def reward(completions, **kw):\n    return [1.0]\n")
    assert "returned 1 scores for 2 completions" in reward_problems(f"file:path={short}")[0][1]
    good = tmp_path / "good.py"
    good.write_text("def score(completions, answer=None, **kw):\n    return [float(len(c)) for c in completions]\n")
    assert reward_problems(f"file:path={good},function=score") == []
    assert score(f"file:path={good},function=score", ["ab", "abcd"]) == [2.0, 4.0]


def test_user_code_and_sandbox_refused_when_hosted(tmp_path, monkeypatch):
    good = tmp_path / "good.py"
    good.write_text("def reward(completions, **kw):\n    return [0.0] * len(completions)\n")
    monkeypatch.setenv("STUDIO_HOSTED", "1")
    for reward in (f"file:path={good}", "code_tests"):
        [(field, message)] = reward_problems(reward)
        assert field == "method.reward" and "only available when the studio runs locally" in message
    with pytest.raises(PermissionError):
        from studio.rewards.code import run_tests

        run_tests("x = 1", "assert x == 1")
    monkeypatch.delenv("STUDIO_HOSTED")
    assert reward_problems(f"file:path={good}") == [] and reward_problems("code_tests") == []


def test_missing_answer_column_is_refused_naming_the_source(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Hi"}\n')
    spec = RunSpec.from_dict({"method": {"name": "grpo", "reward": "json_valid, json_match"},
                              "data": {"sources": [{"path": str(data)}]}})
    [(field, message)] = data_problems(spec)
    assert field == "data.sources.0.path" and "json_match" in message and "'answer'" in message
    spec.method.reward = "json_valid"
    assert data_problems(spec) == []
    assert os.path.exists(data)


def test_reward_try_cli_scores_each_component(capsys):
    import json

    from studio.cli import main

    rc = main(["reward", "try", "--reward", "think_format, 2*numeric:tol=0.01", "--json",
               "--completion", "<think>6 x 7</think> 42", "--completion", "41", "--reference", "42"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["components"] == ["think_format", "numeric"] and out["weights"] == [1.0, 2.0]
    assert [r["total"] for r in out["rows"]] == [3.0, 0.0]
    assert out["rows"][0]["scores"] == {"think_format": 1.0, "numeric": 1.0}
    assert main(["reward", "try", "--reward", "regex:pattern=(", "--completion", "x"]) == 2
    assert "does not compile" in capsys.readouterr().err
