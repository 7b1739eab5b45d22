"""`studio estimate` for each kind of source it reads, its overrides, and its refusal of a
spec that does not validate."""
from __future__ import annotations

import argparse
import json

from studio import estimate as est
from studio.spec import MethodSpec, ModelSpec, RunSpec


def _cli(argv):
    parser = argparse.ArgumentParser()
    est.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_for_each_kind_of_source(tmp_path, capsys):
    import studio.model as sm

    spec = ModelSpec(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, n_layers=2)
    model = sm.build_model(spec)
    model.save_pretrained(tmp_path / "run" / "final")
    run = RunSpec(model=spec, method=MethodSpec(regime="lora", lora_r=4))
    run.save(tmp_path / "run" / "spec.yaml")
    run.save(tmp_path / "spec.yaml")
    real = sum(p.numel() for p in model.parameters())

    sources = [str(tmp_path / "spec.yaml"), str(tmp_path / "run" / "final" / "config.json"),
               str(tmp_path / "run" / "final"), str(tmp_path / "run"), "tiny", "llama-8b"]
    for source in sources:
        assert _cli(["estimate", source, "--batch-size", "2", "--seq-len", "16", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert isinstance(out["parameters"], int) and isinstance(out["trainable_parameters"], int)
        assert set(out["memory_bytes"]) >= {"weights", "gradients", "optimizer", "activations", "total"}
        assert all(isinstance(v, int) for v in out["memory_bytes"].values())
        if "llama-8b" == source:
            assert out["parameters"] == 8_030_261_248
        elif source != "tiny":
            assert out["parameters"] == real, source
    # the spec asks for LoRA; the flags override it
    assert _cli(["estimate", str(tmp_path / "spec.yaml"), "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    assert lora["trainable_parameters"] < lora["parameters"]
    assert _cli(["estimate", str(tmp_path / "spec.yaml"), "--regime", "full", "--optimizer", "lion",
                 "--dtype", "bf16", "--device-memory-gb", "1", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["trainable_parameters"] == real and full["memory_bytes"]["weights"] == 4 * real  # fp32 under autocast
    assert full["settings"]["dtype"] == "bf16" and full["settings"]["mixed_precision"]
    assert full["memory_bytes"]["optimizer"] == 4 * real and full["fits"] is True
    assert _cli(["estimate", "tiny"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert _cli(["estimate", str(tmp_path / "nowhere")]) == 2
    assert "name_or_path" in capsys.readouterr().err



def test_cli_refuses_a_spec_that_does_not_validate(tmp_path, capsys):
    # model.source "local" is not a source: it used to be estimated as a default scratch model
    (tmp_path / "local.yaml").write_text("model:\n  source: local\n  name_or_path: some/folder\n")
    assert _cli(["estimate", str(tmp_path / "local.yaml"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "model.source: 'local' is not one of scratch, pretrained" in err
    with_problems = RunSpec(model=ModelSpec(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, n_layers=2))
    with_problems.save(tmp_path / "spec.yaml")
    assert _cli(["estimate", str(tmp_path / "spec.yaml"), "--regime", "qlora", "--method", "ppo"]) == 2
    assert "method.regime: ppo supports" in capsys.readouterr().err
    with_problems.model.d_model = 30  # not a multiple of the 4 heads
    with_problems.save(tmp_path / "spec.yaml")
    assert _cli(["estimate", str(tmp_path / "spec.yaml")]) == 2
    assert "model.d_model" in capsys.readouterr().err
    # a model preset holds no data sources: what the estimate does not read is not asked for
    assert _cli(["estimate", "llama-100m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] > 0
