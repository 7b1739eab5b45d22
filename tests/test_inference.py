"""Chat inference: streaming, stopping, the model cache, the GPU-sharing question and
how tool calls are shown. Models here are tiny and random (built in seconds)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio import inference, jobs
from studio.inference import GenerationSettings, ModelCache, from_display, stream_chat, to_display
from tests.conftest import TINY_MODEL, spec_from

ROOT = Path(__file__).resolve().parent.parent


def save_tiny_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """A random Llama-style model + the shipped tokenizer saved as a model folder."""
    import torch

    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**{**TINY_MODEL, **overrides})
    tokenizer = load_tokenizer(spec)
    torch.manual_seed(seed)
    model = build_or_load(spec, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_lora_run(folder: Path, train_run, **train) -> tuple[Path, Path]:
    """(base, run dir): save_tiny_model LoRA-tuned for 6 steps on the arithmetic chats
    (~30 s CPU), a run with an adapter to chat with, compare and export."""
    base = save_tiny_model(folder / "base")
    run_dir = train_run(spec_from(
        name="tuned", model={"source": "pretrained", "name_or_path": str(base), "max_seq_len": 128},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
        method={"name": "sft", "regime": "lora", "lora_r": 8, "lora_dropout": 0.0},
        train={"max_steps": 6, "batch_size": 8, "learning_rate": 3e-2, "warmup_steps": 0, "log_every": 1,
               **train}))
    return base, run_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return inference.load(str(save_tiny_model(tmp_path_factory.mktemp("tiny") / "m")), device="cpu")


def test_stream_grows_and_uses_the_chat_template(tiny):
    seen = list(stream_chat(tiny, [{"role": "user", "content": "What is 2 plus 3?"}],
                            GenerationSettings(temperature=0, max_new_tokens=12)))
    assert len(seen) >= 3
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:])), "each piece extends the last"
    assert len(seen[-1]) > len(seen[0])
    # a reply without spaces still streams (the stock streamer would wait for a space)
    digits = [str(i % 10) for i in range(12)]
    ids = [tiny.tokenizer.convert_tokens_to_ids(d) for d in digits]
    streamer = inference._streaming_classes()[0](tiny.tokenizer)
    import torch
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    pieces = [p for p in streamer if p]
    assert len(pieces) >= 10 and "".join(pieces) == tiny.tokenizer.decode(ids)
    prompt = inference.build_prompt(tiny.tokenizer, [{"role": "user", "content": "hi"}],
                                    GenerationSettings(system_prompt="Be brief."))
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi")
    assert prompt.endswith("<|im_start|>assistant\n")


def test_a_waiting_reader_has_each_piece_before_generation_goes_on(tiny):
    """The hand-off: with a reader blocked on the stream, the generate side returns from
    handing out a piece only once the reader holds it (without it, the piece sits in the
    queue while the generate thread keeps the GIL); with no reader, it does not wait."""
    streamer = inference._streaming_classes()[0](tiny.tokenizer)
    streamer.handoff_timeout = 5.0  # a hand-off that never completes would show as a 5 s stall
    got = []
    reader = threading.Thread(target=lambda: got.append(next(streamer)))
    reader.start()
    deadline = time.monotonic() + 10
    while not streamer._reader_waiting:
        assert time.monotonic() < deadline, "the reader never started waiting"
        time.sleep(0.001)
    for _ in range(3):  # give the reader time to block inside the queue, not just flag it
        time.sleep(0.01)
    streamer.on_finalized_text("hello")
    assert streamer.text_queue.empty(), "the waiting reader had not taken its piece"
    reader.join(5)
    assert got == ["hello"]
    started = time.perf_counter()
    streamer.on_finalized_text("nobody reads this yet")
    assert time.perf_counter() - started < 1.0, "handing a piece out waited for a reader that was not there"
    assert next(streamer) == "nobody reads this yet"


def test_closing_the_stream_stops_generation_and_frees_the_model(tiny):
    stop = threading.Event()
    stream = stream_chat(tiny, [{"role": "user", "content": "count"}],
                         GenerationSettings(temperature=1.0, max_new_tokens=100_000), stop_event=stop)
    next(stream), next(stream)
    stream.close()  # what gradio does on Stop / a closed tab
    assert stop.is_set()
    # generate() would hold the lock for 100k tokens if it had not been stopped
    assert tiny.lock.acquire(timeout=10), "generation kept running after the consumer left"
    tiny.lock.release()


def test_greedy_is_repeatable_and_settings_reach_generate(tiny):
    msgs = [{"role": "user", "content": "What is 4 plus 4?"}]
    greedy = GenerationSettings(temperature=0, max_new_tokens=10)
    assert inference.reply(tiny, "What is 4 plus 4?", greedy) == inference.reply(tiny, "What is 4 plus 4?", greedy)
    one = list(stream_chat(tiny, msgs, GenerationSettings(temperature=0, max_new_tokens=1)))
    assert len(tiny.tokenizer(one[-1], add_special_tokens=False)["input_ids"]) <= 2


def test_cache_loads_one_copy_for_many_visitors(tmp_path, monkeypatch):
    folder = str(save_tiny_model(tmp_path / "m"))
    calls = []
    real = inference.load

    def counting(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(inference, "load", counting)
    cache = ModelCache(capacity=1)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(folder, device="cpu"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(x) for x in got}) == 1
    other = str(save_tiny_model(tmp_path / "n", seed=1))
    cache.get(other, device="cpu")
    assert cache.loaded() == [other], "capacity 1 evicts the least recently used"
    cache.unload()
    assert cache.loaded() == []


def test_loading_a_pickle_only_folder_is_refused(tmp_path):
    folder = save_tiny_model(tmp_path / "m")
    for f in folder.glob("*.safetensors"):
        f.rename(f.with_name("pytorch_model.bin"))
    with pytest.raises(ValueError, match="safetensors"):
        inference.load(str(folder), device="cpu")


def test_gpu_shared_with_a_training_run_asks_first(tmp_path):
    runs = tmp_path / "runs"
    spec = spec_from(name="busy", model=TINY_MODEL, data={"sources": [{"path": "assets/data/corpus_train.jsonl"}]},
                     method={"name": "pretrain"})
    run_dir = jobs.create_run(spec, runs)
    jobs.write_status(run_dir, state="completed", ended=time.time())
    assert inference.device_conflict("cuda", str(runs), cuda_available=True) == ""  # finished runs hold nothing
    jobs.write_status(run_dir, state="running", pid=os.getpid(), started=time.time())
    warning = inference.device_conflict("cuda", str(runs), cuda_available=True)
    assert run_dir.name in warning and "cpu" in warning
    assert inference.device_conflict("cpu", str(runs), cuda_available=True) == ""
    assert inference.device_conflict("cuda", str(runs), cuda_available=False) == ""


def test_function_calls_and_results_render_as_pretty_json():
    call = {"role": "assistant",
            "content": "<functioncall> {\"name\": \"add_numbers\", \"arguments\": '{\"a\": 123, \"b\": 706}'} <|endoftext|>"}
    shown = to_display(call)["content"]
    assert "**Function call** `add_numbers`" in shown
    assert '```json\n{\n  "name": "add_numbers",\n  "arguments": {\n    "a": 123,' in shown
    assert from_display(to_display(call)) == call
    result = {"role": "tool", "content": '{"result": 829}'}
    assert '"result": 829' in to_display(result)["content"] and "Function response" in to_display(result)["content"]
    assert from_display(to_display(result)) == result
    typed = from_display({"role": "user", "content": 'FUNCTION RESPONSE: {"result": 5}'})
    assert typed == {"role": "tool", "content": '{"result": 5}'}


def test_shipped_tool_conversations_survive_the_display_round_trip():
    import json

    from studio.data.normalize import _glaive

    rows = [json.loads(line) for line in (ROOT / "assets/data/tools_glaive.jsonl").read_text().splitlines()[:40]]
    calls = 0
    for row in rows:
        for m in _glaive(row)["messages"]:
            shown = to_display(m)
            calls += "Function call" in shown["content"]
            assert from_display(shown) == m
    assert calls >= 10


@settings(max_examples=60, deadline=None)
@given(role=st.sampled_from(["user", "assistant", "tool"]), text=st.text(max_size=80))
def test_display_round_trip_is_lossless(role, text):
    if role == "user" and text.startswith(inference.TOOL_PREFIX):
        return
    m = {"role": role, "content": text}
    assert from_display(to_display(m)) == m
