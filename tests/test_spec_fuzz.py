"""#17 "never a traceback": hypothesis over every spec field, given as `--set key=value`
strings and as YAML spec files, through the CLI's own main() in this process.

Whatever the value, `python -m studio train` ends cleanly: exit 0 with a run directory
(the worker is replaced by a stub that marks the run completed, so everything up to the
launch is exercised: parsing, coercion, validate(), the launch/memory/data preflight),
or exit 2 with an `error:` line that names a spec field (or the file / --set key at
fault) and nothing made on disk. An exception escaping main() fails the test."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from studio import cli, jobs
from studio.presets import load_run

BASE = load_run("quickstart").to_dict()


def leaf_paths(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaf_paths(v, f"{prefix}{k}.")]
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [p for i, v in enumerate(node) for p in leaf_paths(v, f"{prefix}{i}.")]
    return [prefix[:-1]]


FIELDS = leaf_paths(BASE) + ["data.sources", "model", "train", "nonsense.field", "train.no_such_field",
                             "data.sources.3.path", "data.sources.x.path", ""]
# a spec field named in the error, or the file / --set key the value came from
NAMED = re.compile(r"^error: .*((name|model|data|method|train)(\.\w+)*|--set |spec|\.yaml)", re.S)

YAML_TEXT = st.sampled_from([
    "[", "]", "{", "}", "{a: 1}", "[1, 2]", "- a", ": x", "a: b: c", "!!python/object:os.system", "~", "null",
    "yes", "off", "1e400", "-1e400", ".nan", ".inf", "-.inf", "0x1F", "0o17", "1_000", "'unterminated", '"x',
    "&a [*a]", "*missing", "%YAML 1.1", "|", ">", "#", "@", "`", "\t", "\0", "\x85", "é", "🤖",
    "-5", "-0", "0", "1", "2.5", "-2.5", "1e-9", "99999999999999999999999", "-99999999999999999999",
    "assets/data/arith_sft_train.jsonl", "/etc", "/dev/null", "../../etc/passwd", "assets/tokenizer",
])
VALUES = st.one_of(
    YAML_TEXT,
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
)
PY_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    """No training process: a launched run is marked completed on the spot."""
    monkeypatch.setattr(jobs, "start", lambda run_dir, env=None: jobs.write_status(run_dir, state="completed"))


def train_cleanly(argv: list[str], capsys, runs: Path) -> None:
    before = set(runs.iterdir()) if runs.exists() else set()
    code = cli.main(["--runs-dir", str(runs)] + argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    made = (set(runs.iterdir()) if runs.exists() else set()) - before
    made = {p for p in made if not p.name.startswith(".")}
    event(f"exit {code}")  # --hypothesis-show-statistics: how many ran clean vs were refused
    if code == 0:
        assert "completed:" in out.out and len(made) == 1, (argv, out)
    else:
        assert code == 2, (argv, code, out.err)
        assert NAMED.search(out.err), (argv, out.err)
        assert not made, (argv, out.err)


@FUZZ
@given(assignments=st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_set_strings(assignments, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "quickstart"]
        for key, value in assignments:
            argv += ["--set", f"{key}={value}"]
        train_cleanly(argv, capsys, Path(tmp) / "runs")


def set_in(data: dict, path: str, value) -> None:
    parts = [p for p in path.split(".") if p]
    node = data
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and isinstance(node.get(part), (dict, list)):
            node = node[part]
        else:
            return
    if isinstance(node, dict) and parts:
        node[parts[-1]] = value


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), PY_VALUES), min_size=1, max_size=3))
def test_yaml_spec_files(changes, capsys):
    import copy

    data = copy.deepcopy(BASE)
    for key, value in changes:
        set_in(data, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        train_cleanly(["train", str(path)], capsys, Path(tmp) / "runs")


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.lists(YAML_TEXT, max_size=8).map("\n".join),
                      st.lists(YAML_TEXT, max_size=8).map(lambda xs: "train:\n  " + "\n  ".join(xs))))
def test_spec_text(text, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        train_cleanly(["train", str(path)], capsys, Path(tmp) / "runs")
