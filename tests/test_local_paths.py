"""Files anywhere when local (#25.4): on a person's own machine (the CLI, the app on
127.0.0.1 without auth) any readable path works; a hosted server (auth, demo, share, a
non-local bind) keeps data under its roots and says which flag widens them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from studio import policy
from studio.data import DataError, resolve_path
from studio.spec import DataSource, RunSpec
from studio.ui.app import AppSettings
from studio.ui.form import SOURCES_PATH, elem_id
from tests.browser import free_port, serve
from tests.test_hosting import wait_up
from tests.test_security import run_dirs, start_call, validation_index

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra) -> dict:
    """This machine's environment without the test suite's data roots or a hosted flag."""
    env = {k: v for k, v in os.environ.items() if k not in ("STUDIO_DATA_ROOTS", policy.HOSTED_ENV)}
    return {**env, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", **extra}


@pytest.fixture
def my_file(tmp_path) -> Path:
    path = tmp_path / "home" / "my.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"text": f"row {i} of my own file"}) + "\n" for i in range(3)))
    return path


def test_the_cli_reads_a_file_anywhere_on_my_machine(my_file):
    out = subprocess.run([sys.executable, "-m", "studio", "data", "inspect", str(my_file)], cwd=ROOT,
                         env=clean_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 (3 usable, 0 bad)" in out.stdout and "row 0 of my own file" in out.stdout


def test_resolve_path_confines_only_when_hosted(my_file, monkeypatch):
    monkeypatch.delenv("STUDIO_DATA_ROOTS", raising=False)
    monkeypatch.delenv(policy.HOSTED_ENV, raising=False)
    assert resolve_path(str(my_file)) == my_file.resolve()
    monkeypatch.setenv(policy.HOSTED_ENV, "1")
    with pytest.raises(DataError) as err:
        resolve_path(str(my_file))
    assert "outside the allowed data folders" in err.value.message and "--data-root" in err.value.message
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(my_file.parent))  # what --data-root DIR sets
    assert resolve_path(str(my_file)) == my_file.resolve()


def test_the_local_app_accepts_my_file(my_file, tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_DATA_ROOTS", raising=False)
    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url:
        config = httpx.get(url + "/config").json()
        _, data = start_call(config, **{elem_id(SOURCES_PATH): str(my_file)})
        shown = raw_validation(url, config, data)
        assert str(my_file) not in shown and "outside" not in shown, shown


def raw_validation(url, config, data, client=None) -> str:
    from tests.test_fn_index import queue_call

    out = queue_call(client or httpx.Client(), url, validation_index(config), data)
    assert out["success"] is True, out
    return json.dumps(out["output"]["data"][0])


def test_the_hosted_app_refuses_it_and_names_the_flag(my_file, tmp_path):
    from tests.test_fn_index import launched, login, queue_call

    runs = tmp_path / "runs"
    users = tmp_path / "users"
    users.write_text("ann:pw\n")
    with launched(["--auth-file", str(users)], runs, tmp_path) as url, httpx.Client() as c:
        login(c, url)
        config = c.get(url + "/config").json()
        index, data = start_call(config, **{elem_id(SOURCES_PATH): str(my_file)})
        out = queue_call(c, url, index, data)
        assert out["success"] is False and "--data-root" in json.dumps(out), out
        assert "row 0 of my own file" not in json.dumps(out)
        problems = raw_validation(url, config, data, client=c)
        assert "--data-root" in problems
        # a model folder outside the roots is refused the same way, before any config is read
        index, data = start_call(config, **{elem_id("model.source"): "pretrained",
                                            elem_id("model.name_or_path"): str(my_file.parent)})
        out = queue_call(c, url, index, data)
        assert out["success"] is False and "model.name_or_path" in json.dumps(out), out
        assert run_dirs(runs) == []


def test_data_root_flag_widens_a_hosted_server(my_file, monkeypatch):
    from studio import serve as serve_mod

    for name in ("STUDIO_DATA_ROOTS", policy.HOSTED_ENV, policy.REMOTE_CODE_ENV, policy.MODEL_ROOTS_ENV,
                 "STUDIO_RUNS_DIR"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    monkeypatch.setenv("STUDIO_DATA_ROOTS", "")
    spec = RunSpec()
    spec.data.sources = [DataSource(path=str(my_file))]
    args = serve_mod.parse_args(["--host", "0.0.0.0", "--data-root", str(my_file.parent)])
    assert serve_mod.export_policy(args) is True  # a non-local bind is hosted
    assert policy.refusals(spec, policy.Policy(hosted=True)) == []
    assert serve_mod.export_policy(serve_mod.parse_args([])) is False  # 127.0.0.1, no auth: local
