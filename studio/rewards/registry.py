"""The reward library by name, and method.reward -> callables trl can use.

Every library reward is `fn(completions, answer=None, <arguments>, **kw) -> list[float]`,
trl's reward signature: trl passes prompts, completion_ids and every data column as
keywords; `answer` is the prompt data's reference column."""
from __future__ import annotations

import inspect

from studio.rewards import answer as A
from studio.rewards import fmt as F
from studio.rewards import length as L
from studio.rewards.arith import closeness, exact_match, length_penalty, number_format
from studio.rewards.code import code_tests
from studio.rewards.config import Entry, bind_args, parse

MODEL = "model"
FILE = "file"

# name -> (function, what it scores, needs the answer column)
LIBRARY: dict[str, tuple] = {
    "exact_match": (exact_match, "1 if the first number in the reply equals the answer column, else 0", True),
    "closeness": (closeness, "1 / (1 + |reply - answer|): partial credit for a number near the answer", True),
    "format": (number_format, "1 if the reply is just a number, else 0", False),
    "length_penalty": (length_penalty, "-0.01 per character of the reply (shorter is better)", False),
    "match": (A.match, "1 if the answer (after any </think>) equals the reference, case and spacing ignored "
              "(normalize=false: exact)", True),
    "numeric": (A.numeric, "1 if the answer's last number is within tol (or rel) of the reference", True),
    "math_equiv": (A.math_equiv, "1 if math-verify finds the answer equal to the reference (1/2 = 0.5)", True),
    "contains": (A.contains, "1 if the reply contains text=... (or the reference)", True),
    "regex": (A.regex, "1 if the reply matches pattern=... (flags=ims, full=true for the whole reply)", False),
    "choice": (A.choice, "1 if the option letter picked (A-E) is the reference letter", True),
    "think_format": (F.think_format, "1 for <think>reasoning</think> then an answer, else 0", False),
    "json_valid": (F.json_valid, "1 if the answer is a JSON object that parses", False),
    "json_schema": (F.json_schema, "1 if the answer's JSON validates against schema={...}", False),
    "json_match": (F.json_match, "share of the reference JSON object's fields the reply's JSON gets right", True),
    "tool_call": (F.tool_call, "1 if the tool call's name and arguments match the reference (0.5: name only)", True),
    "code_tests": (code_tests, "1 if the reply's code passes the answer column's unit tests (sandboxed; "
                   "local mode only)", True),
    "target_length": (L.target_length, "-penalty per char (or word) away from target=...", False),
    "repetition": (L.repetition, "-scale x share of repeated word n-grams (n=3)", False),
}
RUNS_CODE = {"code_tests", FILE}


def params(name: str) -> list[str]:
    """The arguments a reward takes, in order."""
    if name == FILE:
        return ["path", "function"]
    if name == MODEL:
        return ["path"]
    if name not in LIBRARY:
        return []
    sig = inspect.signature(LIBRARY[name][0])
    return [p.name for p in sig.parameters.values()
            if p.name not in ("completions", "answer") and p.kind is not p.VAR_KEYWORD]


def first_param(name: str) -> str | None:
    found = params(name)
    return found[0] if found else None


class Configured:
    """A library reward with its arguments bound, named for its metric (trl logs
    rewards/<__name__>/mean). A class, not a closure, so trl can pickle it."""

    def __init__(self, fn, args: dict, metric: str):
        self.fn, self.args, self.__name__ = fn, args, metric

    def __call__(self, completions, answer=None, **kw):
        return self.fn(completions, answer=answer, **{**kw, **self.args})


class UserReward:
    """A function from the person's own file, called with its errors shown by line."""

    def __init__(self, path: str, function: str, metric: str):
        self.path, self.function, self.__name__ = path, function, metric

    def __call__(self, completions, **kw):
        from studio.rewards.user import call_user, load_user_reward

        return call_user(load_user_reward(self.path, self.function), self.path, completions, **kw)


def configure(entry: Entry, device: str = "cpu", trust_remote_code: bool = False, load_models: bool = True):
    """One entry -> its callable. Raises a ValueError naming the problem."""
    if entry.name == MODEL:
        path = entry.args.get("path") or entry.args.get("value") or ""
        if set(entry.args) - {"path", "value"} or not path:
            raise ValueError("model: write model:<reward run dir>, e.g. model:runs/my-reward-run")
        if not load_models:
            return None
        from studio.methods.reward_model import load_reward_model

        return load_reward_model(f"model:{path}", device, trust_remote_code=trust_remote_code)
    if entry.name == FILE:
        from studio.rewards.user import load_user_reward

        extra = set(entry.args) - {"path", "function"}
        if extra or not entry.args.get("path"):
            raise ValueError("file: write file:path=my_reward.py (and function=name if it is not 'reward')")
        function = entry.args.get("function", "reward")
        load_user_reward(entry.args["path"], function)  # import errors now, with their line
        return UserReward(entry.args["path"], function, entry.metric)
    if entry.name not in LIBRARY:
        raise ValueError(f"unknown reward {entry.name!r}; choose one of {', '.join(LIBRARY)}, "
                         f"{FILE}:path=<your .py> or {MODEL}:<reward run dir>")
    fn = LIBRARY[entry.name][0]
    args = bind_args(entry.name, fn, entry.args)
    if entry.name == "code_tests":
        from studio.rewards.user import refuse_when_hosted

        refuse_when_hosted("code_tests")
    check_args(entry.name, args)
    return Configured(fn, args, entry.metric)


def check_args(name: str, args: dict) -> None:
    """Arguments that are well typed but unusable: a regex that does not compile, a schema
    that is not valid, a missing required one."""
    if name == "regex":
        A.compile_pattern(args.get("pattern", ""), args.get("flags", ""))
    elif name == "json_schema":
        if args.get("schema") is None:
            raise ValueError("json_schema needs schema={...}, e.g. json_schema:schema={\"type\":\"object\"}")
        F.check_schema(args["schema"])
    elif name == "target_length" and args.get("unit", "chars") not in ("chars", "words"):
        raise ValueError("target_length: unit is chars or words")


def build(spec_reward, device: str = "cpu", trust_remote_code: bool = False) -> tuple[list, list[float]]:
    """method.reward -> (callables, weights) for trl (GRPOConfig.reward_weights) or PPO."""
    entries = parse(spec_reward)
    if not entries:
        raise ValueError("method.reward: choose a reward (e.g. exact_match) or model:<reward run dir>")
    funcs = []
    for entry in entries:
        try:
            funcs.append(configure(entry, device, trust_remote_code))
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith("method.reward") else f"method.reward: {message}") from None
    return funcs, [e.weight for e in entries]
