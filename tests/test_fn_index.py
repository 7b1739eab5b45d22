"""Every event the page has can be called by fn_index, "private" ones included (#17.3).

`python app.py` is launched in demo mode and in auth mode (the full studio, hosted),
and every registered function is called through gradio's own queue
(/gradio_api/queue/join with its fn_index) with hostile arguments: None, huge strings,
paths that climb out ('../../etc/passwd', a canary file outside the data roots), dicts
where strings belong, and the page's own form with trust_remote_code switched on and the
canary as every path. Whatever each handler answers: no traceback reaches the client, no run
starts, and no byte of a file outside the roots comes back."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from studio import policy
from studio.ui.form import SOURCES_PATH, elem_id
from tests.browser import free_port
from tests.test_hosting import stop_app, wait_up
from tests.test_inference import save_tiny_model

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary-5f1e9c-never-leaves-its-folder"
HUGE = "A" * 50_000
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages/")


def queue_call(client: httpx.Client, url: str, fn_index: int, data: list, timeout: float = 120) -> dict:
    """What the page does: join the queue by fn_index, read the event stream to the end."""
    session = uuid.uuid4().hex
    r = client.post(url + "/gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                            "session_hash": session, "event_data": None,
                                                            "trigger_id": None}, timeout=60)
    if r.status_code != 200:
        return {"success": False, "status": r.status_code, "body": r.text[:2000]}
    with client.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session},
                       timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    return {"success": False, "msg": "stream ended"}


def login(client: httpx.Client, url: str) -> None:
    assert client.post(url + "/login", data={"username": "ann", "password": "pw"}).status_code == 200


@contextlib.contextmanager
def launched(flags: list[str], runs: Path, tmp: Path, env: dict | None = None):
    """`python app.py FLAGS` on a free port, without the test suite's data roots."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("STUDIO_DATA_ROOTS", policy.HOSTED_ENV)}
    full = {**base, "GRADIO_SERVER_PORT": str(port), "STUDIO_RUNS_DIR": str(runs), "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1", "STUDIO_UPLOADS_DIR": str(tmp / "uploads"), **(env or {})}
    log = open(tmp / f"app-{port}.log", "w+")
    proc = subprocess.Popen([sys.executable, "app.py", *flags], cwd=ROOT, env=full, stdout=log, stderr=log,
                            text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_up(url, proc)
        except (AssertionError, AttributeError):
            log.seek(0)
            raise AssertionError(f"app.py {flags} did not come up: {log.read()[-3000:]}") from None
        yield url
    finally:
        stop_app(proc)
        log.close()


def hostile_inputs(config: dict, dep: dict, canary: Path) -> list[list]:
    """The argument lists each event gets."""
    comps = {c["id"]: c for c in config["components"]}
    n = len(dep["inputs"])
    as_file = {"path": str(canary), "meta": {"_type": "gradio.FileData"}, "orig_name": "x.jsonl"}
    variants = [[None] * n, [HUGE] * n, ["../../etc/passwd"] * n, [str(canary)] * n, [as_file] * n,
                [{"role": "user", "content": str(canary)}] * n]
    # the page's own values with remote code switched on (the data shipped: nothing else to
    # refuse), then with the canary as every path the page has
    comp_ids = [comps[cid].get("props", {}).get("elem_id") for cid in dep["inputs"]]
    values = [comps[cid].get("props", {}).get("value") for cid in dep["inputs"]]
    trust = elem_id("model.trust_remote_code")
    if trust in comp_ids:
        variants.append([True if e == trust else v for e, v in zip(comp_ids, values)])
    folders = (elem_id("model.name_or_path"), "chat-model", "chat-model-b")  # a model folder outside the roots
    if elem_id(SOURCES_PATH) in comp_ids or any(e in folders for e in comp_ids):
        source = elem_id("model.source")  # name_or_path is read for a pretrained model only
        pick = {elem_id(SOURCES_PATH): str(canary), source: "pretrained", **{f: str(canary.parent) for f in folders}}
        variants.append([pick.get(e, v) for e, v in zip(comp_ids, values)])
    return variants


def call_everything(client: httpx.Client, url: str, canary: Path) -> tuple[int, list[str]]:
    """(calls made, what went wrong) for every registered function and argument list."""
    config = client.get(url + "/config").json()
    calls, wrong = 0, []
    for index, dep in enumerate(config["dependencies"]):
        for data in hostile_inputs(config, dep, canary):
            out = json.dumps(queue_call(client, url, index, data))
            calls += 1
            name = dep.get("api_name") or f"fn {index}"
            if any(mark in out for mark in TRACE_MARKS):
                wrong.append(f"{name}: a traceback reached the client: {out[:300]}")
            if CANARY in out or "root:x:0:0" in out:
                wrong.append(f"{name}: a file outside the roots came back: {out[:300]}")
    return calls, wrong


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fn-index")
    secret = tmp / "secret"
    secret.mkdir()
    canary = secret / "canary.jsonl"
    canary.write_text(json.dumps({"text": CANARY}) + "\n")
    # a model folder outside the roots whose config would show the canary if it were read
    (secret / "config.json").write_text(json.dumps({"model_type": CANARY, "architectures": [CANARY]}))
    model = save_tiny_model(tmp / "demo-model")
    (tmp / "users").write_text("ann:pw\n")
    return dict(tmp=tmp, canary=canary, model=model)


def test_every_event_in_demo_mode(setup):
    runs = setup["tmp"] / "runs-demo"
    env = {"STUDIO_DEMO": "1", "STUDIO_DEMO_MODELS": str(setup["model"])}
    with launched([], runs, setup["tmp"], env) as url, httpx.Client() as c:
        n_events = len(c.get(url + "/config").json()["dependencies"])
        calls, wrong = call_everything(c, url, setup["canary"])
    assert n_events >= 6 and calls >= 6 * n_events
    assert wrong == []
    assert not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()], "a run started in demo mode"


def test_every_event_in_auth_mode(setup):
    runs = setup["tmp"] / "runs-auth"
    with launched(["--auth-file", str(setup["tmp"] / "users")], runs, setup["tmp"]) as url, httpx.Client() as c:
        assert c.get(url + "/config").status_code == 401  # nothing without a login
        assert queue_call(c, url, 0, [None])["success"] is False
        login(c, url)
        n_events = len(c.get(url + "/config").json()["dependencies"])
        calls, wrong = call_everything(c, url, setup["canary"])
        time.sleep(1)
    assert n_events >= 40 and calls >= 6 * n_events
    assert wrong == []
    started = [p.name for p in runs.iterdir() if p.is_dir()] if runs.exists() else []
    assert started == [], f"hostile calls started runs: {started}"
