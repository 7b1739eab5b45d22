"""The one recipe table (presets/recipes/sizes.yaml): the seed's quick reference by size,
the regime's learning rates and adapter settings, each phase's weight decay and warmup,
and every recipe a valid spec that the person can still override."""
from __future__ import annotations

from studio import advisor
from studio.methods import REGISTRY
from studio.spec import ModelSpec, RunSpec

def test_sizes_file_matches_the_seed_quick_reference():
    sizes = advisor.load_sizes()
    by_name = {b["name"]: b["phases"] for b in sizes["buckets"]}
    assert by_name["small"]["sft"]["learning_rate"] == 1e-5 and by_name["large"]["base"]["grad_accum"] == 128
    assert set(sizes["method_phase"]) == set(REGISTRY)


def test_recipe_values():
    small_sft = advisor.recipe("sft", "full", "small")
    assert small_sft["train.learning_rate"] == 1e-5 and small_sft["train.batch_size"] == 4
    assert small_sft["train.grad_accum"] == 16
    assert advisor.recipe("sft", "lora", "large")["train.learning_rate"] == 1e-4  # seed: LoRA 1e-4
    qlora = advisor.recipe("sft", "qlora", "medium")
    assert qlora["train.learning_rate"] == 2e-4 and qlora["method.lora_r"] == 64
    assert advisor.recipe("dpo", "full", "large")["train.learning_rate"] == 5e-7  # the DPO card
    assert advisor.recipe("dpo", "lora", "large")["train.learning_rate"] == 5e-6
    assert advisor.recipe("pretrain", "full", "tiny")["data.packing"] is True
    ppo = advisor.recipe("ppo", "full", "medium")
    assert (ppo["train.batch_size"], ppo["method.mini_batch_size"]) == (128, 32)
    grpo = advisor.recipe("grpo", "full", "medium")
    assert grpo["train.batch_size"] * grpo["train.grad_accum"] == 128


def test_size_buckets():
    assert advisor.size_bucket(1_000_000) == "tiny"
    assert advisor.size_bucket(124_000_000) == "small"
    assert advisor.size_bucket(1_500_000_000) == "medium"
    assert advisor.size_bucket(70_000_000_000) == "large"
    assert advisor.size_bucket(None, from_scratch=True) == "tiny"


def test_every_recipe_makes_a_valid_spec():
    base = RunSpec(model=ModelSpec(source="pretrained", name_or_path="some/model"))
    sizes = advisor.load_sizes()
    for name, method in REGISTRY.items():
        for regime in method.regimes:
            for bucket in ("tiny", "small", "medium", "large"):
                fields = advisor.recipe(name, regime, bucket, sizes)
                spec = advisor.apply_recipe(base, fields)
                bad = [p for p in spec.validate() if p.field.startswith(("method.", "train."))
                       and p.field not in ("method.reward", "method.teacher")]
                assert not bad, (name, regime, bucket, bad)
                assert spec.method.name == name and spec.method.regime == regime
                assert spec.train.learning_rate == fields["train.learning_rate"] > 0


def test_recipe_picks_by_size_and_regime_and_stays_overridable():
    # seed quick reference: SFT 1e-5 at ~100M, 5e-6 at ~1B, 1e-6 at ~7B; LoRA 1e-4, QLoRA 2e-4
    assert advisor.recipe("sft", "full", advisor.size_bucket(100_000_000))["train.learning_rate"] == 1e-5
    assert advisor.recipe("sft", "full", advisor.size_bucket(1_000_000_000))["train.learning_rate"] == 5e-6
    assert advisor.recipe("sft", "full", advisor.size_bucket(7_000_000_000))["train.learning_rate"] == 1e-6
    assert advisor.recipe("sft", "lora", "large")["train.learning_rate"] == 1e-4
    assert advisor.recipe("sft", "qlora", "large")["train.learning_rate"] == 2e-4
    assert advisor.recipe("pretrain", "full", "small")["train.grad_accum"] == 16
    # weight decay and warmup by phase (base 0.1, SFT-like 0.01), the tiny class without decay
    small_base = advisor.recipe("pretrain", "full", "small")
    assert (small_base["train.weight_decay"], small_base["train.warmup_steps"]) == (0.1, 0.05)
    assert advisor.recipe("pretrain", "full", "tiny")["train.weight_decay"] == 0.0
    assert advisor.recipe("cpt", "lora", "medium")["train.weight_decay"] == 0.01
    for name in ("sft", "distill"):
        fields = advisor.recipe(name, "full", "medium")
        assert (fields["train.weight_decay"], fields["train.warmup_steps"]) == (0.01, 0.03), name
    assert "train.weight_decay" not in advisor.recipe("dpo", "full", "medium")  # the spec's default
    # applied, then overridden by the person
    base = RunSpec(model=ModelSpec(source="pretrained", name_or_path="runs/base"))
    spec = advisor.apply_recipe(base, advisor.recipe("sft", "full", "small")).with_overrides(["train.learning_rate=3e-5"])
    assert spec.train.learning_rate == 3e-5 and spec.train.batch_size == 4 and spec.train.weight_decay == 0.01
