"""The architecture matrix: tiny random copies of fifteen real families (tests/arch_models)
trained by the studio's own worker path, then reloaded, merged and chatted with.

In the suite: every family once with LoRA SFT (saved, reloaded, merged, chatted with),
QLoRA / DPO / GRPO / reward on a few families each, and the regime fixes the issue lists
as direct checks. `make test-matrix` (marker `matrix`) runs the whole grid: every family x
the 18 method/regime combinations of the registry (each method with LoRA, SFT in each
other regime), and writes the seconds of each run to $STUDIO_MATRIX_TIMES (make test-matrix:
bench/results/matrix_times.json)."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
import torch

from studio.methods import REGISTRY
from tests.arch_models import FAMILIES, make_family
from tests.conftest import run_in_process, spec_from

DATA = {
    "conversation": "assets/data/arith_sft_train.jsonl",
    "text": "assets/data/corpus_train.jsonl",
    "preference": "assets/data/arith_prefs_train.jsonl",
    "unpaired": "assets/data/arith_kto_train.jsonl",
    "prompt": "assets/data/arith_prompts_train.jsonl",
}
# every method with LoRA, and SFT in each other regime: the 18 combinations of the grid
COMBOS = [(name, "lora") for name in REGISTRY] + [
    ("sft", r) for r in REGISTRY["sft"].regimes if r != "lora"]
PROBE = torch.tensor([[5, 17, 42, 99, 7, 3, 64, 11]])


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: make_family(f, root / f) for f in FAMILIES}


def matrix_spec(folder: Path, method: str, regime: str, steps: int = 2):
    kind = REGISTRY[method].data_kinds[0]
    m = {"name": method, "regime": regime, "lora_r": 4, "lora_alpha": 8, "num_virtual_tokens": 4,
         "freeze_trainable_layers": 1}
    train = {"max_steps": steps, "batch_size": 2, "learning_rate": 5e-3, "log_every": 1, "warmup_steps": 0,
             "eval_every": 0, "save_every": 0}
    if method == "distill":
        m["teacher"] = str(folder)  # the same family: same tokenizer, a fixed target
    if method in ("grpo", "ppo"):
        # a random model never gets a sum right: exact_match would give every sample 0 and no
        # gradient; length_penalty scores each sample differently
        m.update(reward="length_penalty", max_new_tokens=6, group_size=4, mini_batch_size=2, ppo_epochs=1)
        train["batch_size"] = 4
    return spec_from(
        name=f"{folder.name}-{method}-{regime}",
        model={"source": "pretrained", "name_or_path": str(folder), "max_seq_len": 64},
        data={"sources": [{"path": DATA[kind]}], "eval_fraction": 0.0, "max_rows": 16,
              "packing": False},
        method=m, train=train)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROBE, attention_mask=torch.ones_like(PROBE)).logits.float()


def _base_logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    return _logits(AutoModelForCausalLM.from_pretrained(folder).eval())


def check_causal_run(run_dir: Path, folder: Path, regime: str, tmp: Path) -> None:
    """final/ reloads through the chat path, answers a chat turn, and (adapters) merges into a
    standalone model that gives the same logits; the model moved away from the base."""
    from transformers import AutoModelForCausalLM

    from studio import export, inference

    loaded = inference.load(str(run_dir), device="cpu")
    text = inference.reply(loaded, "What is 2 + 3?", inference.GenerationSettings(max_new_tokens=4, temperature=0))
    assert isinstance(text, str)
    tuned = _logits(loaded.model)
    if regime not in ("prefix", "prompt"):  # these change the input, not a weight
        assert not torch.allclose(tuned, _base_logits(folder), atol=1e-6), "training left the model as it was"
        merged = export.merge(str(run_dir), tmp / "merged")
        standalone = AutoModelForCausalLM.from_pretrained(merged).eval()
        assert torch.allclose(_logits(standalone), tuned, atol=1e-4), "the merged model differs from the adapter"
    else:
        assert loaded.is_adapter and torch.isfinite(tuned).all()


def check_reward_run(run_dir: Path, folder: Path) -> None:
    from safetensors.torch import load_file

    from studio.methods.reward_model import load_reward_model

    rm = load_reward_model(str(run_dir))
    scores = rm(prompts=["1 + 1 ="] * 2, completions=[" 2", " 7"])
    assert len(scores) == 2 and all(s == s for s in scores)
    base = load_file(str(folder / "model.safetensors"))
    trunk = {k: v for k, v in rm.model.state_dict().items() if k in base}
    assert trunk, "the reward model shares no weight names with its base"
    assert any(not torch.equal(v.float(), base[k].float()) for k, v in trunk.items()), "the trunk did not train"


def train_and_check(families, family: str, method: str, regime: str, tmp: Path) -> float:
    folder = families[family]
    start = time.perf_counter()
    run_dir = run_in_process(matrix_spec(folder, method, regime), tmp / "runs")
    seconds = time.perf_counter() - start
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "train" for r in records), "no training step was logged"
    if method == "reward":
        check_reward_run(run_dir, folder)
    else:
        check_causal_run(run_dir, folder, regime, tmp)
    return seconds


# -- the suite: each family once, each method on a few ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_lora_sft_reloads_merges_and_chats(families, family, tmp_path, capsys):
    train_and_check(families, family, "sft", "lora", tmp_path)
    log = capsys.readouterr().out
    assert "Regime lora adapts" in log and "(peft counts the same)" in log


SUITE = [("mixtral", "dpo", "lora"), ("gpt_neox", "dpo", "lora"), ("qwen3", "dpo", "lora"),
         ("llama", "grpo", "lora"), ("falcon", "grpo", "lora"), ("qwen2_moe", "grpo", "lora"),
         ("gemma2", "sft", "qlora"), ("bloom", "sft", "qlora"), ("mixtral", "sft", "qlora"),
         ("granite", "reward", "lora"), ("granite", "reward", "full"),
         ("falcon", "sft", "prefix"), ("qwen2_moe", "sft", "prefix"), ("gpt_neox", "sft", "ia3")]


@pytest.mark.slow
@pytest.mark.parametrize("family,method,regime", SUITE, ids=["-".join(c) for c in SUITE])
def test_methods_on_a_few_families(families, family, method, regime, tmp_path):
    train_and_check(families, family, method, regime, tmp_path)


# -- the regime fixes, checked directly on the model ---------------------------------------


def _adapt(folder: Path, **method):
    from transformers import AutoModelForCausalLM

    from studio.model import apply_regime
    from studio.spec import MethodSpec

    return apply_regime(AutoModelForCausalLM.from_pretrained(folder), MethodSpec(**method))


def _step_moves(model, names_like: str) -> None:
    """One SGD step moves the adapter weights named like `names_like`, and nothing frozen."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and names_like in n}
    assert params, f"nothing trainable matches {names_like}"
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(input_ids=PROBE, attention_mask=torch.ones_like(PROBE), labels=PROBE).loss.backward()
    opt.step()
    assert any(not torch.equal(before[n], p.detach()) for n, p in params.items()), f"{names_like} did not move"
    after = dict(model.named_parameters())
    assert all(torch.equal(v, after[n].detach()) for n, v in frozen.items()), "a frozen weight moved"


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_lora_reaches_the_routed_experts(families, family):
    from studio.model import adapted_summary

    model = _adapt(families[family], regime="lora", lora_r=4)
    summary = adapted_summary(model)
    assert summary["modules"].get("mlp.experts.gate_up_proj") == 2
    assert summary["modules"].get("mlp.experts.down_proj") == 2
    assert summary["matches_peft"]
    assert next(iter(model.peft_config.values())).lora_dropout == 0.0
    assert any("dropout" in n for n in summary["notes"])
    _step_moves(model, "experts")


def test_dora_on_moe_says_the_experts_are_left_out(families):
    from studio.model import adapted_summary

    summary = adapted_summary(_adapt(families["mixtral"], regime="dora", lora_r=4))
    assert not any("experts" in k for k in summary["modules"])
    assert any("not adapted" in n for n in summary["notes"])


@pytest.mark.parametrize("family,expected", [
    ("gpt_neox", {"attention.query_key_value", "mlp.dense_4h_to_h"}),
    ("falcon", {"self_attention.query_key_value", "mlp.dense_4h_to_h"}),
    ("bloom", {"self_attention.query_key_value", "mlp.dense_4h_to_h"}),
    ("olmo2", {"self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"}),
    ("granite", {"self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"}),
])
def test_ia3_uses_each_familys_own_targets(families, family, expected):
    from studio.model import adapted_summary

    model = _adapt(families[family], regime="ia3")
    summary = adapted_summary(model)
    assert set(summary["modules"]) == expected and summary["matches_peft"]
    _step_moves(model, "ia3_l")


def test_ia3_follows_target_modules_when_named(families):
    from studio.model import adapted_summary

    summary = adapted_summary(_adapt(families["llama"], regime="ia3", target_modules="q_proj,o_proj"))
    assert set(summary["modules"]) == {"self_attn.q_proj", "self_attn.o_proj"}


def test_target_names_the_model_lacks_are_refused_with_its_names(families):
    with pytest.raises(ValueError, match=r"method.target_modules: q_proj.*query_key_value"):
        _adapt(families["gpt_neox"], regime="lora", target_modules="q_proj,v_proj")
    with pytest.raises(ValueError, match="method.target_modules"):
        _adapt(families["bloom"], regime="ia3", target_modules="k_proj")


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "falcon"])
def test_prefix_tuning_runs_where_it_broke(families, family):
    model = _adapt(families[family], regime="prefix", num_virtual_tokens=4)
    _step_moves(model, "prompt_encoder")


def test_estimate_counts_what_peft_trains_for_ia3(families):
    """The estimate's trainable count for IA3 against peft's, family by family (it once
    kept Llama names and counted 0 on GPT-NeoX, Falcon and BLOOM), with the default
    targets and with method.target_modules named."""
    from studio.estimate import trainable_parameters
    from studio.model import adapted_summary
    from studio.spec import MethodSpec, ModelSpec

    wrong = {}
    for family in FAMILIES:
        spec = ModelSpec(source="pretrained", name_or_path=str(families[family]))
        method = MethodSpec(regime="ia3")
        real = adapted_summary(_adapt(families[family], regime="ia3"))["peft_trainable"]
        estimated = trainable_parameters(spec, method)
        if estimated != real or real == 0:
            wrong[family] = (estimated, real)
    named = dict(regime="ia3", target_modules="query_key_value")
    real = adapted_summary(_adapt(families["gpt_neox"], **named))["peft_trainable"]
    spec = ModelSpec(source="pretrained", name_or_path=str(families["gpt_neox"]))
    assert trainable_parameters(spec, MethodSpec(**named)) == real
    assert not wrong, f"estimate vs peft (estimated, real) for IA3: {wrong}"


def test_the_ia3_table_is_peft_s():
    """studio.estimate.ia3 writes peft's mapping out (the estimate must not import peft):
    it must stay equal to the installed peft's."""
    from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
                                      TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS)

    from studio.estimate.ia3 import PEFT_IA3

    assert PEFT_IA3 == {k: (TARGETS[k], FF[k]) for k in TARGETS}


# -- the whole grid (make test-matrix) ---------------------------------------------------------

TIMES = Path(os.environ.get("STUDIO_MATRIX_TIMES", Path(tempfile.gettempdir()) / "studio_matrix_times.json"))


@pytest.mark.matrix
@pytest.mark.parametrize("method,regime", COMBOS, ids=[f"{m}-{r}" for m, r in COMBOS])
@pytest.mark.parametrize("family", FAMILIES)
def test_matrix(families, family, method, regime, tmp_path):
    seconds = train_and_check(families, family, method, regime, tmp_path)
    times = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    times.setdefault(family, {})[f"{method}/{regime}"] = round(seconds, 1)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True))


def test_the_grid_is_the_registrys_eighteen_combinations():
    assert len(COMBOS) == 18 and len(set(COMBOS)) == 18
    assert all(regime in REGISTRY[m].regimes for m, regime in COMBOS)
