"""What the studio answers for the advisor itself: base or instruct, the model's size and
the memory each regime needs (the estimator on a real config), the data kind of a file."""
from __future__ import annotations

import json

import pytest
import yaml

from studio import advisor
from studio.advisor import advise
from studio.estimate import count_parameters, estimate_memory
from studio.spec import ModelSpec, RunSpec
from tests.conftest import GB

def test_infer_answers_from_the_quickstart_spec():
    from studio.presets import default_spec

    spec = default_spec()
    answers = advisor.infer_answers(spec, "conversation", device_memory_gb=16)
    assert answers.from_scratch is True and answers.model_is_base is True
    assert answers.device_memory_bytes == 16 * GB
    assert answers.model_size_params and answers.model_size_params < 30_000_000
    advice = advise(answers)
    assert (advice.method, advice.regime, advice.size_bucket) == ("sft", "full", "tiny")


def test_base_or_instruct_from_name_run_and_template(tmp_path):
    guess = lambda name: advisor.guess_model_is_base(ModelSpec(source="pretrained", name_or_path=name))[0]  # noqa: E731
    assert guess("Qwen/Qwen2.5-0.5B-Instruct") is False
    assert guess("meta-llama/Llama-3.1-8B-base") is True
    assert guess("gpt2") is None
    run = tmp_path / "run1"
    (run / "final").mkdir(parents=True)
    (run / "spec.yaml").write_text(yaml.safe_dump({"method": {"name": "pretrain"}}))
    assert guess(str(run / "final")) is True
    (run / "spec.yaml").write_text(yaml.safe_dump({"method": {"name": "sft"}}))
    assert guess(str(run / "final")) is False
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    assert guess(str(folder)) is True
    assert advisor.params_from_name("HuggingFaceTB/SmolLM2-135M") == 135_000_000
    assert advisor.params_from_name("Qwen/Qwen2.5-0.5B") == 500_000_000


@pytest.mark.parametrize("file,kind", [
    ("arith_prefs_train.jsonl", "preference"), ("arith_kto_train.jsonl", "unpaired"),
    ("arith_prompts_train.jsonl", "prompt"), ("arith_sft_train.jsonl", "conversation"),
    ("corpus_train.jsonl", "text")])
def test_data_kind_of_the_shipped_files(file, kind):
    found, rows, how = advisor.detect_data_kind(f"assets/data/{file}")
    assert found == kind and how
    assert rows == sum(1 for line in open(f"assets/data/{file}") if line.strip())


def test_sampled_rows_and_files_it_cannot_sample(tmp_path):
    rows = tmp_path / "d.jsonl"
    rows.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\nnot json\n")
    assert advisor.sample_rows(rows) == ([{"prompt": "a", "chosen": "b", "rejected": "c"}, None], 2)
    assert advisor.detect_data_kind(rows)[:2] == ("preference", 2)
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text\nhello\nworld\n")
    assert advisor.sample_rows(csv_file) == ([{"text": "hello"}, {"text": "world"}], 2)
    parquet = tmp_path / "d.parquet"
    parquet.write_bytes(b"PAR1")
    kind, rows, how = advisor.detect_data_kind(parquet)
    assert kind is None and "give the data kind yourself" in how


def test_infer_answers_estimates_each_regime_from_the_models_config(tmp_path):
    config = dict(model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  max_position_embeddings=4096, tie_word_embeddings=False)
    folder = tmp_path / "Model-7B-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    spec = RunSpec(model=ModelSpec(source="pretrained", name_or_path=str(folder), max_seq_len=512))
    spec.method.regime = "lora"
    answers = advisor.infer_answers(spec, device_memory_gb=80)
    for regime in ("full", "lora", "qlora"):
        want = estimate_memory(advisor.apply_recipe(spec, {"method.regime": regime}))["total"]
        assert getattr(answers, f"memory_needed_{regime}_bytes") == want, regime
    assert answers.memory_needed_full_bytes > answers.memory_needed_lora_bytes > answers.memory_needed_qlora_bytes
    assert answers.model_size_params == count_parameters(config)["total"] == 6_738_415_616
    assert answers.model_is_base is False and answers.from_scratch is False
    assert answers.device_memory_bytes == 80 * GB
    # a hub id whose config is not here: no memory figures, the size from the name
    hub = advisor.infer_answers(RunSpec(model=ModelSpec(source="pretrained", name_or_path="org/Model-7B-Instruct")))
    assert hub.memory_needed_full_bytes is None and hub.model_size_params == 7_000_000_000
