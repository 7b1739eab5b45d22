"""Optimizers, schedules, warmup, gradient accumulation and bf16 autocast, through the same
TrainingArguments/Trainer path the methods use (common.make_config + optimizer_kwargs)."""
from __future__ import annotations

import math

import pytest
import torch

from studio.methods import common
from studio.methods.context import TrainContext
from studio.spec import RunSpec

VOCAB = 64


def tiny_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


def tiny_data(n: int = 16, length: int = 16):
    """Counting sequences mod VOCAB: trivially learnable, so any working optimizer lowers the loss."""
    from datasets import Dataset

    rows = [[(start + i) % VOCAB for i in range(length)] for start in range(n)]
    return Dataset.from_dict({"input_ids": rows, "labels": rows, "attention_mask": [[1] * length] * n})


def context(tmp_path, precision: str = "fp32", **train) -> TrainContext:
    spec = RunSpec.from_dict({"train": {"log_every": 1000, "warmup_steps": 0, "seed": 0, **train}})
    return TrainContext(spec=spec, run_dir=tmp_path, precision=precision)


def trainer_for(ctx, model, data):
    from transformers import Trainer, TrainingArguments, default_data_collator

    args = common.make_config(TrainingArguments, ctx)
    return Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator,
                   **common.optimizer_kwargs(ctx))


def loss_on(model, data) -> float:
    batch = {k: torch.tensor(data[k]) for k in ("input_ids", "labels", "attention_mask")}
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


@pytest.mark.parametrize("name, lr", [("adamw", 1e-2), ("adamw_8bit", 1e-2), ("adafactor", 1e-2),
                                      ("lion", 1e-3), ("sophia", 1e-2), ("muon", 1e-2)])
def test_each_optimizer_lowers_the_loss(tmp_path, name, lr):
    model, data = tiny_model(), tiny_data()
    before = loss_on(model, data)
    ctx = context(tmp_path, optimizer=name, learning_rate=lr, max_steps=12, batch_size=8, scheduler="none",
                  weight_decay=0.01)
    trainer = trainer_for(ctx, model, data)
    trainer.train()
    after = loss_on(model, data)
    assert after < before - 0.5, (name, before, after)
    inner = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    kind = type(inner)
    expected = {"adamw": "torch.optim.adamw.AdamW", "adamw_8bit": "bitsandbytes.optim.adamw.AdamW",
                "adafactor": "transformers.optimization.Adafactor", "lion": "bitsandbytes.optim.lion.Lion",
                "sophia": "studio.optim.SophiaG", "muon": "studio.optim.MuonWithAdamW"}[name]
    assert f"{kind.__module__}.{kind.__name__}" == expected
    if name == "adamw_8bit":
        assert inner.args.optim_bits == 8


def test_muon_takes_hidden_matrices_and_leaves_embeddings_to_adamw():
    from studio.optim import split_for_muon

    model = tiny_model()
    muon, other = split_for_muon(model)
    muon_ids = {id(p) for p in muon}
    assert id(model.get_input_embeddings().weight) not in muon_ids
    assert id(model.get_output_embeddings().weight) not in muon_ids
    assert all(p.ndim == 2 for p in muon) and len(muon) == 2 * 7  # q,k,v,o,gate,up,down per block
    assert any(p.ndim == 1 for p in other)  # norms


def test_muon_and_sophia_state_survives_a_checkpoint_round_trip():
    from studio.optim import MuonFactory, SophiaFactory

    data = tiny_data(8)
    batch = {k: torch.tensor(data[k]) for k in ("input_ids", "labels")}
    for factory in (MuonFactory, SophiaFactory):
        results = []
        for reload in (False, True):
            model = tiny_model()
            opt = factory()(model, lr=1e-2, weight_decay=0.0)
            for step in range(4):
                if step == 2 and reload:  # as a resumed run does: fresh optimizer, saved state
                    saved = opt.state_dict()
                    opt = factory()(model, lr=1e-2, weight_decay=0.0)
                    opt.load_state_dict(saved)
                model(**batch).loss.backward()
                opt.step()
                opt.zero_grad()
            results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if factory is MuonFactory:
            assert torch.allclose(results[0], results[1], atol=1e-6)
        else:  # sophia samples labels for its Hessian estimate: same state, same scale of result
            assert (results[0] - results[1]).abs().max() < 0.05


def lr_curve(tmp_path, scheduler: str, warmup, steps: int = 20) -> list[float]:
    ctx = context(tmp_path, scheduler=scheduler, warmup_steps=warmup, max_steps=steps, learning_rate=1.0)
    trainer = trainer_for(ctx, tiny_model(), tiny_data())
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    lrs = []
    for _ in range(steps):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


def test_schedules_have_their_shapes_and_honour_warmup(tmp_path):
    steps, warm = 20, 4
    curves = {s: lr_curve(tmp_path, s, warm, steps) for s in ("none", "cosine", "linear", "polynomial")}
    for name, lrs in curves.items():
        assert lrs[0] == 0.0 and lrs[2] == pytest.approx(0.5), name  # linear warmup from 0
        assert lrs[warm] == pytest.approx(1.0), name  # peak right after warmup
    assert all(lr == pytest.approx(1.0) for lr in curves["none"][warm:])
    after = lambda lrs: lrs[warm:]  # noqa: E731
    for name in ("cosine", "linear", "polynomial"):
        decay = after(curves[name])
        assert all(a > b for a, b in zip(decay, decay[1:])), name
        assert decay[-1] < 0.2, name
    # t = fraction of the decay done: linear 1-t, cosine (1+cos(pi t))/2, polynomial (1-t)^2
    for i, lr in enumerate(after(curves["linear"])):
        t = i / (steps - warm)
        assert lr == pytest.approx(1 - t, abs=1e-6)
        assert curves["cosine"][warm + i] == pytest.approx(0.5 * (1 + math.cos(math.pi * t)), abs=1e-6)
        assert curves["polynomial"][warm + i] == pytest.approx((1 - t) ** 2, abs=1e-4)
    # below 1, warmup is a fraction of the run
    frac = lr_curve(tmp_path, "linear", 0.25, steps)
    assert frac[5] == pytest.approx(1.0) and frac[4] < 1.0


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    data = tiny_data(8)
    weights = []
    for batch, accum in ((8, 1), (4, 2), (2, 4)):
        model = tiny_model()
        ctx = context(tmp_path / f"{batch}", max_steps=1, batch_size=batch, grad_accum=accum, learning_rate=1e-2,
                      scheduler="none", max_grad_norm=0.0)
        trainer_for(ctx, model, data).train()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    untrained = torch.cat([p.detach().flatten() for p in tiny_model().parameters()])
    assert not torch.allclose(weights[0], untrained)
    for other in weights[1:]:
        assert torch.allclose(weights[0], other, atol=1e-5)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    model, data = tiny_model(), tiny_data()
    before = loss_on(model, data)
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    ctx = context(tmp_path, precision="bf16", max_steps=10, batch_size=8, learning_rate=1e-2, scheduler="none")
    trainer_for(ctx, model, data).train()
    assert torch.bfloat16 in seen  # the linear layers ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert loss_on(model, data) < before - 0.5
