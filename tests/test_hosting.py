"""Hosting: `python app.py` in demo mode serves chat with its configured model and
nothing else (checked through gradio_client and raw HTTP, not the page), auth turns
away a wrong password, and 20 visitors at once are all answered from one copy of the
model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from studio import serve
from studio.inference import _text
from tests.browser import free_port
from tests.test_inference import save_tiny_model

ROOT = Path(__file__).resolve().parent.parent
# ~11M parameters (~46 MB in fp32): big enough that a second copy would show in RSS
DEMO_MODEL = dict(d_model=384, n_heads=6, n_kv_heads=2, d_ff=1024, n_layers=6)
GEN = ["", 0.0, 0.9, 0, 6, 1.0]  # system, temperature (greedy), top_p, top_k, max_new_tokens, repetition


def client(url, **kw):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, **kw)


def wait_up(url: str, proc=None, timeout: float = 150) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"app exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/config", timeout=2).status_code in (200, 401):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not come up")


def stop_app(proc, grace: float = 20) -> None:
    """SIGTERM the app, SIGKILL it if it has not exited after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The Spaces entry in demo mode, as a visitor's server would run it."""
    tmp = tmp_path_factory.mktemp("demo")
    model = save_tiny_model(tmp / "demo-model", **DEMO_MODEL)
    other = save_tiny_model(tmp / "other-model", seed=3)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "STUDIO_DEMO": "1", "STUDIO_DEMO_MODELS": str(model),
           "STUDIO_RUNS_DIR": str(tmp / "runs"), "STUDIO_CONCURRENCY": "2", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        yield dict(url=url, proc=proc, model="demo-model", path=str(model), other=str(other), model_bytes=sum(f.stat().st_size for f in model.glob("*.safetensors")))
    finally:
        stop_app(proc)


def full_app_endpoints() -> set[str]:
    """Every api_name the full studio has (training, data, paths, export...)."""
    from studio.ui.app import AppSettings, build_app

    config = build_app(AppSettings()).get_config_file()
    return {d["api_name"] for d in config["dependencies"] if d.get("api_name")}


def test_demo_exposes_chat_only(demo):
    api = client(demo["url"]).view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/chat", "/chat_compare"}
    text = httpx.get(demo["url"] + "/config").text
    assert demo["path"] not in text and "demo-model" in text, "the page shows the model's name, never its folder"
    config = json.loads(text)
    kinds = {c["type"] for c in config["components"]}
    assert not kinds & {"file", "uploadbutton", "files", "image", "audio", "video", "dataframe"}
    names = {d.get("api_name") for d in config["dependencies"]}
    mine = {n for n in names if n and n.split("_")[0] in ("chat", "respond", "regenerate", "lambda", "unnamed")}
    assert names == mine, f"unexpected events in demo mode: {names - mine}"


def test_demo_refuses_every_training_and_path_endpoint(demo):
    try:
        everything = full_app_endpoints()
    except Exception:  # another tab mid-edit must not hide this check: use the chat tab's own
        everything = set()
    everything |= {"load", "load_cpu", "load_anyway", "unload", "export", "run_prompt_set", "start", "launch",
                   "preview", "upload", "stop"}
    chat_names = {"chat", "chat_compare", "respond", "respond_1", "regenerate", "regenerate_1"}
    c = client(demo["url"])
    refused = 0
    for name in sorted(everything - chat_names):
        with pytest.raises(Exception):
            c.predict(api_name="/" + name)
        refused += 1
    assert refused >= 10
    # the configured model answers; any other source is refused by the server itself
    history = c.predict(demo["model"], [], "What is 2 plus 2?", *GEN, api_name="/chat")
    assert [m["role"] for m in history] == ["user", "assistant"]
    for source in (demo["other"], demo["path"], "../../etc", "gpt2"):
        with pytest.raises(Exception, match="configured models|not in the list of choices"):
            c.predict(source, [], "hi", *GEN, api_name="/chat")


def raw_call(url: str, fn_index: int, data: list) -> dict:
    """What the page does: join the queue by fn_index and read the event stream. This
    reaches events gradio_client cannot (api_visibility="private")."""
    session = uuid.uuid4().hex
    r = httpx.post(url + "/gradio_api/queue/join",
                   json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                         "trigger_id": None}, timeout=30)
    if r.status_code != 200:
        return {"success": False, "status": r.status_code}
    with httpx.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("no process_completed")


def test_private_events_check_the_source_too(demo):
    config = httpx.get(demo["url"] + "/config").json()
    ids = {c["id"]: c for c in config["components"]}
    checked = 0
    for index, dep in enumerate(config["dependencies"]):
        inputs = [ids[i] for i in dep["inputs"]]
        if not inputs or inputs[0]["type"] != "dropdown":
            continue
        history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        data = [demo["other"], history] + (["hi"] if len(inputs) == 9 else []) + GEN
        out = raw_call(demo["url"], index, data)
        assert out["success"] is False, f"event {dep.get('api_name')} served an unconfigured model"
        assert "configured models" in json.dumps(out) or "list of choices" in json.dumps(out), out
        checked += 1
    assert checked >= 6  # respond, regenerate (and send/submit) for both columns


def test_demo_refuses_uploads(demo):
    r = httpx.post(demo["url"] + "/gradio_api/upload", files={"files": ("x.txt", b"hello world" * 100)})
    assert r.status_code == 413


def test_twenty_concurrent_chats_all_answered_from_one_copy(demo):
    c = client(demo["url"])
    c.predict(demo["model"], [], "warm up", *GEN, api_name="/chat")  # loads the model once
    before = rss_bytes(demo["proc"].pid)
    start = time.time()
    # 20 visitors' requests in flight at once (queued by the server, 2 generating at a time)
    jobs = [c.submit(demo["model"], [], f"What is {i} plus 1?", *GEN, api_name="/chat") for i in range(20)]
    replies = [job.result(timeout=240) for job in jobs]
    took = time.time() - start
    after = rss_bytes(demo["proc"].pid)
    assert len(replies) == 20, took
    asked = sorted(_text(h[0]["content"]) for h in replies)
    assert asked == sorted(f"What is {i} plus 1?" for i in range(20)), "each visitor got their own conversation"
    assert all(h[-1]["role"] == "assistant" for h in replies)
    assert after - before < 0.8 * demo["model_bytes"], f"RSS grew {(after - before) / 1e6:.0f} MB: a second copy?"


def test_auth_turns_away_a_wrong_password(tmp_path, monkeypatch):
    from tests.browser import serve as serve_in_thread
    from studio.ui.app import AppSettings

    (tmp_path / "users").write_text("# who may log in\nann:s3cret\n")
    auth = serve.load_auth(str(tmp_path / "users"))
    assert auth == [("ann", "s3cret")]
    settings = AppSettings(runs_dir=str(tmp_path / "runs"), demo=True, demo_models=("m",))
    with serve_in_thread(settings, auth=auth) as url:
        assert httpx.get(url + "/config").status_code == 401
        bad = httpx.post(url + "/login", data={"username": "ann", "password": "wrong"})
        assert bad.status_code >= 400
        with pytest.raises(Exception):
            client(url, auth=("ann", "wrong"))
        with httpx.Client() as s:
            assert s.post(url + "/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            assert s.get(url + "/config").status_code == 200
        assert "/chat" in client(url, auth=("ann", "s3cret")).view_api(return_format="dict", print_info=False)[
            "named_endpoints"]


def test_bind_and_flags_from_env(monkeypatch, capsys):
    assert serve.bind_host("0.0.0.0", None, demo=False, on_spaces=False)[0] == "127.0.0.1"
    assert "without authentication" in serve.bind_host("0.0.0.0", None, demo=False, on_spaces=False)[1]
    assert serve.bind_host("0.0.0.0", [("a", "b")], demo=False, on_spaces=False) == ("0.0.0.0", "")
    assert serve.bind_host("0.0.0.0", None, demo=True, on_spaces=False) == ("0.0.0.0", "")
    assert serve.bind_host("127.0.0.1", None, demo=False, on_spaces=True) == ("0.0.0.0", "")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("STUDIO_USERNAME", "ann")
    monkeypatch.setenv("STUDIO_PASSWORD", "pw")
    monkeypatch.delenv("SPACE_ID", raising=False)
    options = serve.launch_options(serve.parse_args([]))
    assert (options["server_name"], options["server_port"], options["auth"]) == ("0.0.0.0", 7999, [("ann", "pw")])
    monkeypatch.delenv("STUDIO_PASSWORD")
    options = serve.launch_options(serve.parse_args(["--share"]))
    assert options["server_name"] == "127.0.0.1" and options["share"] is True
    assert "Refusing to serve on 0.0.0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--demo-model"):
        serve.build(serve.parse_args(["--demo"]))
    front = (ROOT / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
