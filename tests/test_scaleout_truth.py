"""Truth (#24): the arithmetic task split by operation — client A sees only additions,
client B only subtractions. On the union held-out set (every test row; each operation's
rows weigh the same, since the file holds 154 additions to 70 subtractions and a model
that knows only additions would otherwise look good) the federated global model, and
the decentralized peers' averaged model, beat each client's locally-trained model; the
gap to the centrally-trained one is reported. Same local loop and optimizer steps per
client; the central model takes as many steps as both clients together. The figures
are printed for the README.

Settings from an in-process FedAvg sweep on this base (balanced held-out loss after 200
steps a client): batch 32 at lr 1e-3, 40 rounds of 5 local steps: 1.10 (additions alone
1.48, subtractions alone 2.39, central 0.63); 10 rounds of 20: 1.19; batch 8 at lr 3e-3
jumped between 1.2 and 1.9 from round to round. Freezing LoRA's A (so averaging B is
exact) did not help: 1.21."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from studio.scaleout.local import LocalTrainer
from tests.scaleout_cases import finished, needs_engines, scaleout_spec, start_worker

ADD = re.compile(r"\+|plus|sum|add|count up|more", re.I)
SUB = re.compile(r" - |minus|differ|subtract|count down|take|less|fewer", re.I)
ROUNDS, LOCAL = 40, 5  # each client/peer: 200 optimizer steps, averaged every 5
TRAIN = {"batch_size": 32, "learning_rate": 1e-3}


def split_by_operation(folder):
    rows = [json.loads(line) for line in open("assets/data/arith_sft_train.jsonl")]
    parts = {"additions": [], "subtractions": []}
    for row in rows:
        q = row["messages"][0]["content"]
        if ADD.search(q) and not SUB.search(q):
            parts["additions"].append(row)
        elif SUB.search(q) and not ADD.search(q):
            parts["subtractions"].append(row)
    test = {"additions": [], "subtractions": []}
    for line in open("assets/data/arith_sft_test.jsonl"):
        test["additions" if ADD.search(json.loads(line)["messages"][0]["content"]) else "subtractions"].append(line)
    for name, lines in test.items():
        (folder / f"test-{name}.jsonl").write_text("".join(lines))
    paths = []
    for name, part in parts.items():
        assert len(part) > 200, (name, len(part))
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return split_by_operation(tmp_path_factory.mktemp("split"))


class Union:
    """Held-out loss on every test row, each operation's rows weighing the same."""

    def __init__(self, base, split):
        self.parts = []
        for name in ("additions", "subtractions"):
            spec = scaleout_spec(base, [str(Path(split[0]).parent / f"test-{name}.jsonl")], {"max_steps": 1})
            spec.data.eval_fraction = 0.999
            self.scorer = LocalTrainer(spec, need_train=False)
            self.parts.append(self.scorer.eval_rows)

    def loss(self, model) -> float:
        self.scorer.model = model  # its batching and loss, on any model
        return sum(self.scorer.eval_loss(rows) for rows in self.parts) / len(self.parts)


@pytest.fixture(scope="module")
def union(well_read_base, split):
    return Union(well_read_base, split)


@pytest.fixture(scope="module")
def baselines(well_read_base, split, union):
    """Union held-out loss of each client trained alone, and of one model trained on both."""
    losses = {}
    for name, sources in (("local-additions", split[:1]), ("local-subtractions", split[1:]), ("central", split)):
        trainer = LocalTrainer(scaleout_spec(well_read_base, sources, {"max_steps": 1, **TRAIN}))
        trainer.train_steps(ROUNDS * LOCAL * (2 if name == "central" else 1))
        losses[name] = union.loss(trainer.model)
    return losses


ENGINES = {
    "federated": {"max_steps": 1, **TRAIN, "federation": {"enabled": True, "rounds": ROUNDS, "local_steps": LOCAL}},
    # one peer per source (the two splits); averaging every LOCAL steps, as the federation does
    "decentralized": {"max_steps": ROUNDS * LOCAL, **TRAIN, "decentralized": {
        "enabled": True, "average_every": LOCAL, "averaging_timeout": 60}},
}


@needs_engines
@pytest.mark.truth
@pytest.mark.timeout(3600)  # 600 pretraining steps, 800 local steps, 400 per engine
@pytest.mark.parametrize("engine", list(ENGINES))
def test_scaled_out_model_beats_local_and_nears_central(engine, tmp_path, well_read_base, split, union, baselines):
    from studio.inference import load

    spec = scaleout_spec(well_read_base, split, ENGINES[engine], name=f"{engine}-truth")
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        finished(run_dir, proc, timeout=2400)
    losses = dict(baselines, **{engine: union.loss(load(str(run_dir / "final"), device="cpu").model)})
    best_local = min(losses["local-additions"], losses["local-subtractions"])
    gap, spread = losses[engine] - losses["central"], best_local - losses["central"]
    print(f"{engine}: union held-out loss", json.dumps({k: round(v, 3) for k, v in losses.items()}),
          f"gap to central {gap:.3f} ({gap / spread:.0%} of the best local model's)")
    assert losses[engine] < losses["local-additions"]
    assert losses[engine] < losses["local-subtractions"]
