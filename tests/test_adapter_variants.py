"""The adapter variants (#19) through peft: rsLoRA, PiSSA / OLoRA initialisation, LoRA+,
LoRA on an int8 base, and GaLore for full training. Each trains through the worker and
its final/ reloads into a model that differs from the base; PiSSA/OLoRA are saved as a
plain LoRA over the original base that reproduces the trained model; LoRA+ gives B its
ratio of the learning rate."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from tests.conftest import TINY_MODEL, pretrain_on_the_corpus, run_in_process, spec_from  # noqa: E402

from studio.model import apply_regime, build_or_load, load_tokenizer  # noqa: E402
from studio.model.adapters import adapter_save_kwargs  # noqa: E402
from studio.spec import MethodSpec, ModelSpec, RunSpec, TrainSpec  # noqa: E402

VARIANTS = {
    "rslora": ({"regime": "lora", "lora_r": 8, "use_rslora": True}, {}),
    "pissa": ({"regime": "lora", "lora_r": 4, "lora_init": "pissa"}, {}),
    "olora": ({"regime": "lora", "lora_r": 4, "lora_init": "olora"}, {}),
    "loraplus": ({"regime": "lora", "lora_r": 8, "loraplus_ratio": 16}, {}),
    "lora-int8": ({"regime": "qlora", "lora_r": 8, "quant_bits": 8}, {}),
    "galore": ({"regime": "full"}, {"optimizer": "galore_adamw"}),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return pretrain_on_the_corpus(tmp_path_factory.mktemp("runs"), "variants-base", steps=4, batch_size=8)


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_and_reloads(base, tmp_path, name):
    method, train = VARIANTS[name]
    spec = spec_from(
        name=name, model={"source": "pretrained", "name_or_path": str(base), "max_seq_len": 64},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0, "max_rows": 64},
        method={"name": "sft", **method},
        train={"max_steps": 3, "batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 0, "log_every": 1, **train},
    )
    assert not spec.validate(), spec.validate()
    final = run_in_process(spec, tmp_path / "runs") / "final"
    reloaded = build_or_load(ModelSpec(source="pretrained", name_or_path=str(final)))
    original = build_or_load(ModelSpec(source="pretrained", name_or_path=str(base)))
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    assert not torch.allclose(_logits(reloaded, ids), _logits(original, ids), atol=1e-4), "training changed nothing"
    if method["regime"] == "full":
        return
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["use_rslora"] is bool(method.get("use_rslora"))
    if method.get("lora_init"):  # converted to plain LoRA: no decomposition at load, rank doubled
        assert config["init_lora_weights"] is True and config["r"] == 2 * method["lora_r"]


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_decomposed_init_saves_a_lora_that_reproduces_the_trained_model(base, tmp_path, init):
    tok = load_tokenizer(ModelSpec(source="pretrained", name_or_path=str(base)))
    model = build_or_load(ModelSpec(source="pretrained", name_or_path=str(base)), tok)
    method = MethodSpec(regime="lora", lora_r=4, lora_init=init, lora_dropout=0.0)
    model = apply_regime(model, method)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    before = _logits(model, ids)
    with torch.no_grad():  # stand-in for training: move every adapter
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(0.05 * torch.randn_like(p))
    trained = _logits(model, ids)
    assert not torch.allclose(trained, before, atol=1e-4)
    model.save_pretrained(tmp_path / "final", safe_serialization=True, **adapter_save_kwargs(model))
    reloaded = build_or_load(ModelSpec(source="pretrained", name_or_path=str(tmp_path / "final")), tok)
    assert torch.allclose(_logits(reloaded, ids), trained, atol=1e-4)  # over the original base


def test_loraplus_gives_b_its_ratio_of_the_learning_rate(base):
    from studio.optim import optimizer_cls_and_kwargs

    model = build_or_load(ModelSpec(source="pretrained", name_or_path=str(base)))
    method = MethodSpec(regime="lora", lora_r=4, loraplus_ratio=16)
    model = apply_regime(model, method)
    factory, kwargs = optimizer_cls_and_kwargs("adamw", TrainSpec(learning_rate=1e-4), method)
    optimizer = factory()(model, **kwargs)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    a = [lr_of[id(p)] for n, p in named.items() if "lora_A" in n]
    b = [lr_of[id(p)] for n, p in named.items() if "lora_B" in n]
    assert a and b and all(lr == 1e-4 for lr in a) and all(lr == pytest.approx(1.6e-3) for lr in b)
    with pytest.raises(ValueError, match="loraplus_ratio"):
        optimizer_cls_and_kwargs("muon", TrainSpec(), method)


def test_variants_refused_where_they_do_not_apply():
    def problems(**method):
        spec = RunSpec.from_dict({"model": TINY_MODEL, "method": {"name": "sft", **method}})
        return {p.field for p in spec.validate() if p.field.startswith(("method.", "train."))}

    assert "method.lora_init" in problems(regime="qlora", lora_init="pissa")
    assert "method.lora_init" in problems(regime="lora", lora_init="svd")
    assert "method.loraplus_ratio" in problems(regime="full", loraplus_ratio=16)
    assert "method.loraplus_ratio" in problems(regime="lora", loraplus_ratio=0.5)
    assert "method.use_rslora" in problems(regime="ia3", use_rslora=True)
    assert "method.quant_bits" in problems(regime="qlora", quant_bits=2)
    spec = RunSpec.from_dict({"model": TINY_MODEL, "method": {"name": "sft", "regime": "lora"},
                              "train": {"optimizer": "galore_adamw"}})
    galore = [p for p in spec.validate() if p.field == "train.optimizer"]
    assert galore and "regime full" in galore[0].message
    assert not problems(regime="lora", use_rslora=True, lora_init="pissa", loraplus_ratio=16)
