"""The Train tab's options beyond the basics: speed (#26), divergence (#17), held-out
tasks during training (#21) and scale-out (#24). The pure parts (form <-> spec, the
info-line notes, the charts' series) are checked directly; one browser story checks a
refused speed option on this CPU, the scale-out explanation following the form, and a
diverging run rolled back twice with the markers on the loss chart."""
from __future__ import annotations

import pytest

from studio import charts
from studio.metrics import read_all
from studio.spec import Problem
from studio.ui import form, train_tab
from studio.ui.train_handlers import field_notes
from tests.browser import browser, serve, set_number

PLOT = "document.querySelector('#loss-plot .js-plotly-plot')"
PROBLEMS = "document.querySelector('#problems').innerText"
STATE = "document.querySelector('#progress-info')?.dataset.state"


def test_every_new_option_round_trips_through_the_form():
    paths = train_tab.GUARD_PATHS + train_tab.SPEED_PATHS + train_tab.FEDERATION_PATHS + train_tab.DECENTRALIZED_PATHS
    values = {"train.on_divergence": "rollback", "train.max_rollbacks": 3.0, "train.eval_tasks": "a.jsonl, b.jsonl",
              "train.attn_implementation": "eager", "train.torch_compile": "auto", "train.use_liger_kernel": True,
              "train.padding_free": True, "train.group_by_length": True, "train.tf32": False,
              "train.federation.enabled": True, "train.federation.clients": 3.0, "train.federation.rounds": 4.0,
              "train.federation.local_steps": 7.0, "train.federation.client_fraction": 0.5,
              "train.federation.strategy": "fedprox", "train.federation.proximal_mu": 0.1,
              "train.federation.address": "0.0.0.0:9099", "train.decentralized.enabled": False,
              "train.decentralized.peers": 5.0, "train.decentralized.average_every": 4.0,
              "train.decentralized.host": "10.0.0.2", "train.decentralized.initial_peers": "/ip4/x",
              "train.decentralized.averaging_timeout": 12.5}
    assert set(values) == set(paths)
    s = form.spec_from_values(paths, [values[p] for p in paths])
    t = s.train
    assert (t.on_divergence, t.max_rollbacks, t.eval_tasks) == ("rollback", 3, "a.jsonl, b.jsonl")
    assert isinstance(t.max_rollbacks, int) and isinstance(t.federation.rounds, int)
    assert (t.attn_implementation, t.torch_compile, t.use_liger_kernel, t.padding_free, t.group_by_length,
            t.tf32) == ("eager", "auto", True, True, True, False)
    assert (t.federation.clients, t.federation.rounds, t.federation.local_steps, t.federation.client_fraction,
            t.federation.strategy, t.federation.proximal_mu, t.federation.address) == (
        3, 4, 7, 0.5, "fedprox", 0.1, "0.0.0.0:9099")
    assert (t.decentralized.peers, t.decentralized.average_every, t.decentralized.host,
            t.decentralized.initial_peers, t.decentralized.averaging_timeout) == (5, 4, "10.0.0.2", "/ip4/x", 12.5)
    # a loaded spec fills the same widgets back (spec_io uses updates_for)
    assert [u["value"] for u in form.updates_for(s, paths)] == [values[p] for p in paths]


def test_choice_fields_offer_exactly_what_validation_accepts():
    w = form.widget("train.torch_compile", "off")
    assert [c[1] for c in w.choices] == ["off", "on", "auto"]
    assert [c[1] for c in form.widget("train.on_divergence", "stop").choices] == ["stop", "rollback"]
    assert "flash_attention_2" in [c[1] for c in form.widget("train.attn_implementation", "auto").choices]
    # a nested field is labelled by its own name under its group's heading, with a stable id
    rounds = form.widget("train.federation.rounds", 5)
    assert rounds.label == "rounds" and rounds.elem_id == "train-federation-rounds"


def test_a_problem_goes_to_its_own_fields_info_line_and_leaves_with_the_fix():
    paths = ["train.use_liger_kernel", "train.tf32", "train.max_rollbacks"]
    found = [Problem("train.use_liger_kernel", "Liger kernels are Triton code for CUDA GPUs")]
    liger, tf32, rollbacks = field_notes(found, paths)
    assert liger["info"] == "⚠ Liger kernels are Triton code for CUDA GPUs"
    assert tf32["info"] == "" and rollbacks["info"] == form.FIELD_INFO["train.max_rollbacks"]
    # fixed: the usual line comes back (not "unchanged", which would keep the warning)
    assert field_notes([], paths)[0]["info"] == form.FIELD_INFO["train.use_liger_kernel"]


def test_scale_out_and_held_out_series_reach_the_method_chart():
    recs = [{"step": 1, "kind": "train", "loss": 2.2, "client/0/loss": 2.0, "client/1/loss": 2.5,
             "client/0/eval_loss": 2.1, "client/1/eval_loss": 2.6},
            {"step": 2, "kind": "train", "loss": 2.0, "client/0/loss": 1.8, "client/1/loss": 2.3},
            {"step": 2, "kind": "eval", "heldout/arith.jsonl/exact_match": 0.25},
            {"step": 3, "peer/0/loss": 1.5, "peer/1/loss": 1.6, "peer/0/learning_rate": 1e-3}]
    groups = charts.group_keys(charts.method_keys(recs))
    assert groups["client/*/loss"] == ["client/0/loss", "client/1/loss"]
    assert groups["peer/*/loss"] == ["peer/0/loss", "peer/1/loss"]
    assert "peer/0/learning_rate" not in groups["peer/*/loss"]  # a loss chart holds losses only
    fig = charts.method_figure(recs)
    names = {t.name: list(t.y) for t in fig.data}
    assert names["client/1/loss"] == [2.5, 2.3] and names["peer/0/loss"] == [1.5]
    assert names["heldout/arith.jsonl/exact_match"] == [0.25]


def test_the_scale_out_help_follows_the_spec_and_stays_light():
    import subprocess
    import sys

    from studio.scaleout.help import scaleout_help
    from studio.ui.app import default_spec

    s = default_spec()
    text = scaleout_help(s)
    for mode in ("One machine", "Several GPUs", "Federated", "Decentralized", "Privacy", "Each client/peer needs"):
        assert mode in text
    s.train.federation.enabled, s.train.federation.clients, s.train.federation.rounds = True, 3, 4
    assert "federated, 3 clients (shards of one source), 4 rounds" in scaleout_help(s)
    code = ("import sys; from studio.scaleout.help import scaleout_help; from studio.ui.app import default_spec;"
            "scaleout_help(default_spec()); print([m for m in ('torch', 'flwr', 'hivemind') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- in a browser ------------------------------------------------------------------------

def pick(page, elem_id, text):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    page.locator("ul[role='listbox'] li", has_text=text).first.click()


def info_of(page, elem_id) -> str:
    return page.locator(f"#{elem_id}").inner_text()



@pytest.mark.browser
@pytest.mark.slow
def test_speed_refusal_scale_out_help_and_a_rollback_on_the_chart(runs):
    from studio.hardware import cuda_capability
    from studio.ui.app import AppSettings

    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Training settings").click()
        start = page.get_by_role("button", name="Start", exact=True)

        # Liger on this machine: refused beside the box and in the problems list, Start off
        if cuda_capability() is None:
            page.locator("#train-use-liger-kernel input").check()
            page.wait_for_function("document.querySelector('#train-use-liger-kernel').innerText"
                                   ".includes('Triton code for CUDA GPUs')", timeout=20_000)
            # the problems list comes from its own handler (it also reads the data): waited for
            page.wait_for_function(f"{PROBLEMS}.includes('train.use_liger_kernel')", timeout=20_000)
            assert start.is_disabled()
            page.locator("#train-use-liger-kernel input").uncheck()
            page.wait_for_function("!document.querySelector('#train-use-liger-kernel').innerText"
                                   ".includes('Triton')", timeout=20_000)
            page.wait_for_function(f"!{PROBLEMS}.includes('use_liger_kernel')", timeout=20_000)

        # the scale-out explanation: four modes, the per-client estimate, privacy; it follows the form
        page.get_by_text("Scale out (one machine").click()
        help_text = page.locator("#scaleout-help").inner_text()
        for part in ("One machine", "Several GPUs", "Federated", "Decentralized", "Each client/peer needs about",
                     "Privacy"):
            assert part in help_text, part
        page.locator("#train-federation-enabled input").check()
        page.wait_for_function("document.querySelector('#scaleout-help').innerText.includes('This run: federated')",
                               timeout=20_000)
        page.locator("#train-federation-enabled input").uncheck()
        page.wait_for_function("!document.querySelector('#scaleout-help').innerText.includes('This run:')",
                               timeout=20_000)

        # a learning rate that diverges in a few steps, rolled back at most twice
        for elem, value in (("train-max-steps", 10), ("train-learning-rate", 200000), ("train-warmup-steps", 0),
                            ("train-log-every", 1), ("train-batch-size", 8)):
            set_number(page, elem, value)
        pick(page, "train-on-divergence", "rollback")
        set_number(page, "train-max-rollbacks", 2)
        page.locator("#name textarea").fill("too-hot")
        page.wait_for_function("!document.querySelector('#start button, button#start')?.disabled", timeout=20_000)
        start.click()
        page.wait_for_function(f"{STATE} === 'completed' || {STATE} === 'failed'", timeout=120_000)
        page.wait_for_function(f"{PLOT} && ({PLOT}.layout.annotations || []).some(a => (a.text || '')"
                               ".startsWith('rollback'))", timeout=20_000)
        marks = page.evaluate(f"({PLOT}.layout.annotations || []).map(a => a.text)")
        run_dir = next(p for p in runs.iterdir() if p.is_dir())
        rollbacks = [r for r in read_all(run_dir) if r.get("event") == "rollback"]
        assert len(rollbacks) == 2 and all(r["learning_rate"] < 200000 for r in rollbacks)
        assert [m for m in marks if m.startswith("rollback")] == [
            f"rollback · lr {r['learning_rate']:.2g}" for r in rollbacks]
        spec = (run_dir / "spec.yaml").read_text()
        assert "on_divergence: rollback" in spec and "max_rollbacks: 2" in spec
