"""The speed options of train.* (#26): names and device refusals at validation (this CPU
machine cannot run Liger or flash attention), the arguments they become for trl and
transformers, and padding-free SFT: the same loss as the padded batch (the studio's own
architecture and a transformers Llama), and a run whose loss falls."""
from __future__ import annotations

import shutil

import pytest
import torch

from studio.methods.context import TrainContext
from studio.spec import RunSpec
from tests.arch_models import make_family
from tests.conftest import TINY_MODEL, spec_from

NO_GPU = shutil.which("nvidia-smi") is None
needs_cpu_only = pytest.mark.skipif(not NO_GPU, reason="the refusals are for a machine without a CUDA GPU")


def problems(**train) -> dict[str, str]:
    spec = spec_from(model={"source": "pretrained", "name_or_path": "some/model"},
                     data={"sources": [{"kind": "hub", "path": "x/y"}]}, train=train)
    return {p.field: p.message for p in spec.validate()}


@needs_cpu_only
@pytest.mark.parametrize("train, field, words", [
    ({"use_liger_kernel": True}, "train.use_liger_kernel", ("CUDA", "use_liger_kernel: false")),
    ({"attn_implementation": "flash_attention_2"}, "train.attn_implementation", ("no CUDA GPU", "sdpa")),
    ({"attn_implementation": "kernels"}, "train.attn_implementation", ("no CUDA GPU", "sdpa")),
])
def test_gpu_only_options_are_refused_on_cpu(train, field, words):
    found = problems(**train)
    assert field in found, found
    assert all(w in found[field] for w in words), found[field]


def test_option_names_and_the_studio_architecture():
    assert "train.attn_implementation" in problems(attn_implementation="fast")
    assert "train.torch_compile" in problems(torch_compile="yes please")
    ok = problems(attn_implementation="eager", torch_compile="auto", padding_free=True, group_by_length=True)
    assert not [f for f in ok if f.startswith("train.")], ok
    scratch = spec_from(model={**TINY_MODEL, "positional_encoding": "alibi"}, data={"sources": [{"kind": "hub", "path": "x/y"}]},
                        train={"attn_implementation": "eager", "use_liger_kernel": True})
    found = {p.field: p.message for p in scratch.validate()}
    assert "SDPA" in found["train.attn_implementation"] and "studio's own" in found["train.use_liger_kernel"]
    # the CLI's --set reaches every option
    spec = RunSpec().with_overrides(["train.padding_free=true", "train.torch_compile=auto",
                                     "train.attn_implementation=eager", "train.group_by_length=yes"])
    assert (spec.train.padding_free, spec.train.torch_compile, spec.train.group_by_length) == (True, "auto", True)


def test_options_become_the_libraries_arguments(tmp_path):
    from transformers import TrainingArguments
    from trl import SFTConfig

    from studio.methods import common

    spec = spec_from(model=TINY_MODEL, train={"padding_free": True, "group_by_length": True,
                                              "torch_compile": "auto", "max_steps": 5000})
    ctx = TrainContext(spec=spec, run_dir=tmp_path, device="cpu", precision="fp32")
    sft = common.make_config(SFTConfig, ctx)
    assert sft.padding_free and sft.train_sampling_strategy == "group_by_length"
    assert not sft.torch_compile  # auto compiles GPU runs only (CPU: the compile rarely repays)
    assert not sft.use_liger_kernel
    plain = common.make_config(TrainingArguments, ctx)
    assert not hasattr(plain, "padding_free") and plain.train_sampling_strategy == "group_by_length"
    gpu = TrainContext(spec=spec, run_dir=tmp_path, device="cuda", precision="bf16")
    from studio.methods.speed import speed_kwargs, use_compile

    assert use_compile(gpu)
    spec.train.max_steps = 50
    assert not use_compile(gpu)
    spec.train.torch_compile = "on"
    assert speed_kwargs(ctx)["torch_compile"] is True


def rows_batch(vocab: int, lengths=(7, 12, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(3, vocab, (n,), generator=g).tolist()} for n in lengths]


def padded_vs_padding_free(model, rows, pad_id: int):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model.eval()
    losses = []
    for free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=free)(rows)
        with torch.no_grad():
            losses.append(model(**{k: v for k, v in batch.items() if k in (
                "input_ids", "labels", "attention_mask", "position_ids")}, use_cache=False).loss.item())  # as trl calls it
    return losses


def test_padding_free_loss_equals_padded_studio_architecture():
    from studio.model import build_model, load_tokenizer
    from studio.spec import ModelSpec

    ms = ModelSpec(**{**TINY_MODEL, "positional_encoding": "alibi"})  # not a Llama shape: the studio's own
    tok = load_tokenizer(ms)
    torch.manual_seed(0)
    model = build_model(ms, tok)
    assert model.config.model_type == "studio"
    padded, free = padded_vs_padding_free(model, rows_batch(len(tok)), tok.pad_token_id or 0)
    # before the packed mask the rows attended across each other and the losses differed by ~1e-2
    assert free == pytest.approx(padded, rel=1e-5, abs=1e-5)


def test_padding_free_loss_equals_padded_llama(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = make_family("llama", tmp_path / "llama")
    model = AutoModelForCausalLM.from_pretrained(folder)
    padded, free = padded_vs_padding_free(model, rows_batch(model.config.vocab_size), 0)
    assert free == pytest.approx(padded, rel=1e-5, abs=1e-5)


@pytest.mark.slow
def test_padding_free_sft_trains(train_run):
    from studio.metrics import read_all

    spec = spec_from(model=TINY_MODEL, data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}],
                                             "eval_fraction": 0.0},
                     method={"name": "sft"},
                     train={"max_steps": 30, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 2,
                            "log_every": 5, "padding_free": True, "group_by_length": True})
    run_dir = train_run(spec)
    losses = [r["loss"] for r in read_all(run_dir) if r["kind"] == "train" and "loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    assert (run_dir / "final" / "model.safetensors").exists()


def test_estimate_eager_attention_term_matches_measured_cpu_peak():
    """The kept (seq x seq) scores of eager attention, against the allocation tracker of
    bench/estimate_memory.py on a shape the term was not fitted on (3 blocks, 6 heads,
    seq 768). Tolerance 15% on the eager-minus-SDPA difference and on eager's total: the
    tracker counts every storage exactly, the rest is the estimate's own error."""
    import importlib.util

    from transformers import AutoModelForCausalLM, LlamaConfig

    from studio import estimate as est
    from studio.spec import MethodSpec, TrainSpec
    from tests.conftest import ROOT

    loader = importlib.util.spec_from_file_location("bench_estimate_memory", ROOT / "bench" / "estimate_memory.py")
    bench = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(bench)
    cfg = LlamaConfig(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=6,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=1024)
    seq = 768
    measured, estimated = {}, {}
    for impl in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=impl)
        ids = torch.randint(0, 128, (1, seq))
        measured[impl], _ = bench.activation_peak(model, ids, torch.ones_like(ids), torch.optim.AdamW(model.parameters()))
        estimated[impl] = est.estimate_memory(cfg.to_dict(), MethodSpec(), TrainSpec(attn_implementation=impl),
                                              seq_len=seq, batch_size=1, dtype="fp32", padded=False)["activations"]
    diff_measured, diff_estimated = measured["eager"] - measured["sdpa"], estimated["eager"] - estimated["sdpa"]
    assert diff_measured > 2 * measured["sdpa"]  # the seq^2 term dominates at this length
    assert diff_estimated == pytest.approx(diff_measured, rel=0.15), (estimated, measured)
    assert estimated["eager"] == pytest.approx(measured["eager"], rel=0.15), (estimated, measured)


def test_estimate_liger_drops_the_logits_peak():
    """Liger cannot run on CPU (Triton); its term is arithmetic checked here and measured
    by bench/gpu_check.py: at 8k tokens and a 128k vocabulary the logits' 12 bytes per
    entry (~12 GiB) give way to one chunk and the hidden states' gradient."""
    from studio import estimate as est
    from studio.spec import MethodSpec, TrainSpec

    cfg = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True,
           "max_position_embeddings": 8192}
    kw = dict(seq_len=8192, batch_size=1, dtype="bf16", gradient_checkpointing=True)
    plain = est.estimate_memory(cfg, MethodSpec(regime="lora"), TrainSpec(), **kw)["activations"]
    liger = est.estimate_memory(cfg, MethodSpec(regime="lora"), TrainSpec(use_liger_kernel=True), **kw)["activations"]
    logits = 8192 * 128256 * 12
    assert plain - liger > 0.8 * logits
    assert liger < plain / 3
