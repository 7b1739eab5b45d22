"""Truth (#24): the arithmetic task split by operation — client A sees only additions,
client B only subtractions. On the union held-out set the federated global model beats
each client's locally-trained model and comes near the centrally-trained one (same
steps, same local loop); the gap is printed for the README."""
from __future__ import annotations

import json
import re

import pytest

from studio.scaleout.local import LocalTrainer
from tests.scaleout_cases import finished, needs_engines, scaleout_spec, start_worker

ADD = re.compile(r"\+|plus|sum|add|count up|more", re.I)
SUB = re.compile(r" - |minus|differ|subtract|count down|take|less|fewer", re.I)
ROUNDS, LOCAL = 10, 20


def split_by_operation(folder):
    rows = [json.loads(line) for line in open("assets/data/arith_sft_train.jsonl")]
    parts = {"additions": [], "subtractions": []}
    for row in rows:
        q = row["messages"][0]["content"]
        if ADD.search(q) and not SUB.search(q):
            parts["additions"].append(row)
        elif SUB.search(q) and not ADD.search(q):
            parts["subtractions"].append(row)
    paths = []
    for name, part in parts.items():
        assert len(part) > 200, (name, len(part))
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(str(path))
    return paths


@needs_engines
@pytest.mark.truth
def test_federated_beats_local_and_nears_central(tmp_path, well_read_base):
    paths = split_by_operation(tmp_path)
    train = {"max_steps": 1, "federation": {"enabled": True, "rounds": ROUNDS, "local_steps": LOCAL}}
    spec = scaleout_spec(well_read_base, paths, train, name="fed-truth")
    run_dir, proc = start_worker(spec, tmp_path / "runs")
    records = finished(run_dir, proc, timeout=1800)
    federated = [r["eval_loss"] for r in records if "eval_loss" in r][-1]

    union_spec = scaleout_spec(well_read_base, ["assets/data/arith_sft_test.jsonl"], {"max_steps": 1})
    union_spec.data.eval_fraction = 0.999  # every test row held out: the union held-out set
    union = LocalTrainer(union_spec, need_train=False).eval_rows
    losses = {}
    for name, sources in (("local-additions", paths[:1]), ("local-subtractions", paths[1:]), ("central", paths)):
        trainer = LocalTrainer(scaleout_spec(well_read_base, sources, {"max_steps": 1}))
        trainer.train_steps(ROUNDS * LOCAL * (2 if name == "central" else 1))
        losses[name] = trainer.eval_loss(union)
    fed_trainer = LocalTrainer(union_spec, need_train=False)
    from studio.inference import load

    fed_trainer.model = load(str(run_dir / "final"), device="cpu").model
    losses["federated"] = fed_trainer.eval_loss(union)
    print("union held-out loss:", json.dumps({k: round(v, 4) for k, v in losses.items()}),
          "gap federated-central:", round(losses["federated"] - losses["central"], 4),
          "server's last eval_loss:", round(federated, 4))
    assert losses["federated"] < losses["local-additions"]
    assert losses["federated"] < losses["local-subtractions"]
    assert losses["federated"] - losses["central"] < 0.25 * (losses["local-additions"] - losses["central"])
