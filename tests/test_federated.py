"""Federated fine-tuning on Flower (#24): a 3-client run (3 shards of one source) through
the worker ends with one metrics stream (global and per-client loss by round) and a final
adapter that loads on its base and scores what the server reported."""
from __future__ import annotations

import json
import math
import time

import pytest

from studio import jobs, stopping
from studio.spec import RunSpec
from tests.scaleout_cases import (adapter, describe, finished, needs_engines, scaleout_spec, start_worker,
                                  tiny_base)

ARITH = "assets/data/arith_sft_train.jsonl"


def test_federation_fields_are_validated():
    spec = RunSpec.from_dict({"data": {"sources": [{"path": ARITH}]},
                              "train": {"federation": {"enabled": True, "clients": 1, "client_fraction": 0,
                                                       "strategy": "fedsgd"},
                                        "decentralized": {"enabled": True, "average_every": 0}}})
    fields = {p.field for p in spec.validate()}
    assert {"train.federation.clients", "train.federation.client_fraction", "train.federation.strategy",
            "train.decentralized.enabled", "train.decentralized.average_every"} <= fields


@needs_engines
@pytest.mark.slow
def test_three_client_flower_run(tmp_path):
    base = tiny_base(tmp_path / "base")
    rounds = 3
    spec = scaleout_spec(base, [ARITH], {"max_steps": 1, "federation": {
        "enabled": True, "clients": 3, "rounds": rounds, "local_steps": 4, "strategy": "fedprox",
        "proximal_mu": 0.01}}, name="fed", max_rows=300)
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        records = finished(run_dir, proc)
    by_round = {r["round"]: r for r in records if "round" in r}
    assert sorted(by_round) == list(range(rounds + 1))  # round 0: the global model before training
    for rnd in range(1, rounds + 1):
        rec = by_round[rnd]
        assert rec["clients_ok"] == 3 and rec["clients_failed"] == 0
        assert {f"client/shard{i}/loss" for i in range(3)} <= set(rec)
    losses = [by_round[r]["eval_loss"] for r in range(rounds + 1)]
    assert losses[-1] < losses[0] - 0.5, losses  # the averaged model learned

    final = run_dir / "final"
    weights = adapter(final)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero
    from studio.inference import load
    from studio.scaleout.local import LocalTrainer

    loaded = load(str(final), device="cpu")  # the adapter names its base: loadable anywhere
    scorer = LocalTrainer(RunSpec.load(run_dir / "spec.yaml"), need_train=False)
    scorer.model = loaded.model
    assert math.isclose(scorer.eval_loss(), losses[-1], rel_tol=1e-4)  # final/ is the last global model


def test_scaleout_help_names_this_run_and_privacy():
    import sys

    from studio.scaleout import scaleout_help

    spec = RunSpec.from_dict({"data": {"sources": [{"path": "a.jsonl"}, {"path": "b.jsonl"}]},
                              "method": {"regime": "lora"},
                              "train": {"federation": {"enabled": True, "rounds": 7, "strategy": "fedprox"}}})
    text = scaleout_help(spec)
    assert "federated, 2 clients (one per data source), 7 rounds" in text and "fedprox" in text
    assert "no secure aggregation" in text and "studio.scaleout.federated client" in text
    assert "Each round it sends and receives about" in text
    assert "flwr" not in sys.modules and "hivemind" not in sys.modules


@needs_engines
@pytest.mark.slow
def test_stopping_the_run_stops_every_client(tmp_path):
    """The clients are started in the worker's process group, so studio.jobs.stop (which
    signals the group) ends them mid-round along with the server."""
    base = tiny_base(tmp_path / "base")
    spec = scaleout_spec(base, [ARITH], {"max_steps": 1, "federation": {
        "enabled": True, "clients": 3, "rounds": 500, "local_steps": 4}}, name="fedstop", max_rows=300)
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        metrics, deadline = run_dir / "metrics.jsonl", time.time() + 300
        while not (metrics.exists() and any(json.loads(line).get("round", 0) >= 1
                                            for line in metrics.read_text().splitlines())):  # clients trained
            assert proc.poll() is None, (run_dir / "train.log").read_text()[-2000:]
            assert time.time() < deadline, "no federated round in 300 s"
            time.sleep(0.5)
        group = jobs.group_members(proc.pid)
        clients = [line for line in describe(group) if "studio.scaleout.federated client" in line]
        assert len(clients) == 3, describe(group)
        assert jobs.stop(run_dir)["state"] == "stopped"
        left = [pid for pid in group if stopping.running(pid)]
        assert not left, describe(left)
