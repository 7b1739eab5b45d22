"""`studio serve`: the official openai client against the server on 127.0.0.1 (uvicorn in
a thread), on a tiny random model saved by the test. Replies are held equal to the
studio's own greedy replies (inference.stream_chat on a separately loaded copy)."""
from __future__ import annotations

import socket
import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio import inference
from studio.cli import main as cli_main
from studio.inference import GenerationSettings, stream_chat
from studio.ship.cli import ServerThread, ServeError, check_can_serve
from studio.ship.engine import StopScanner
from studio.ship.openai_server import Served, create_app
from tests.test_inference import save_tiny_model

openai = pytest.importorskip("openai", reason="the openai client is in requirements-dev.txt (make test installs it)")
KEY = "test-key-123"
PROMPTS = [f"What is {a} plus {b}?" for a, b in zip(range(3, 19), range(40, 56))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("serve") / "tiny", seed=3)


@pytest.fixture(scope="module")
def studio_model(folder):
    """The reference: the Chat tab's loader and generate path, not the server's."""
    return inference.load(str(folder), device="cpu")


@pytest.fixture(scope="module")
def server(folder):
    srv = ServerThread(create_app(Served({"tiny": str(folder)}), api_key=KEY)).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


def studio_reply(loaded, prompt: str, max_new_tokens: int = 24, seed: int | None = None) -> str:
    """The Chat tab's reply: greedy, or sampled at temperature 1 from `seed`."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)  # generate draws from the global generator; nothing else samples now
    out = ""
    for out in stream_chat(loaded, [{"role": "user", "content": prompt}],
                           GenerationSettings(temperature=0 if seed is None else 1.0, top_p=1.0,
                                              max_new_tokens=max_new_tokens)):
        pass
    return out


def stream_text(client, prompt: str, **kw) -> tuple[str, list]:
    kw = {"temperature": 0, **kw}
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=24, stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_streamed_chat_is_the_studios_greedy_reply(client, studio_model):
    text, chunks = stream_text(client, PROMPTS[0], stream_options={"include_usage": True})
    expected = studio_reply(studio_model, PROMPTS[0])
    assert expected and text == expected
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3, "streamed in pieces"
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    prompt = inference.build_prompt(studio_model.tokenizer, [{"role": "user", "content": PROMPTS[0]}],
                                    GenerationSettings())
    assert usage.prompt_tokens == len(studio_model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= usage.completion_tokens <= 24 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    whole = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPTS[0]}],
                                           temperature=0, max_tokens=24)
    assert whole.choices[0].message.content == expected and whole.usage.completion_tokens == usage.completion_tokens


def test_sixteen_concurrent_streams_each_get_their_own_text(client, studio_model):
    # sampled from a seed per request: a random tiny model's greedy replies are mostly the
    # same few loops, sampled ones differ, so a reply that went to the wrong client shows
    expected = {p: studio_reply(studio_model, p, seed=i) for i, p in enumerate(PROMPTS)}
    assert len(set(expected.values())) == len(PROMPTS)
    got: dict[str, str] = {}
    started = threading.Barrier(len(PROMPTS))

    def ask(i, prompt):
        started.wait()  # all 16 requests in flight together
        got[prompt] = stream_text(client, prompt, temperature=1.0, top_p=1.0, seed=i)[0]

    threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate(PROMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert got == expected


def test_completions_stop_sequences_and_length(client, studio_model):
    tok = studio_model.tokenizer
    prompt = "The sum of 12 and 30 is"
    full = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=20)
    text = full.choices[0].text
    assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 20
    assert full.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    # the reference: the same model's greedy continuation through transformers directly
    import torch

    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = studio_model.model.generate(ids, max_new_tokens=20, do_sample=False,
                                          eos_token_id=studio_model.stop_ids, pad_token_id=tok.pad_token_id)
    assert text == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip(), text
    pieces = list(client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=20,
                                            stop=[stop], stream=True))
    streamed = "".join(c.choices[0].text for c in pieces)
    assert streamed == text[:text.find(stop)] and pieces[-1].choices[0].finish_reason == "stop"


def test_sampling_parameters_reach_generation(client):
    kw = dict(model="tiny", prompt="Once", max_tokens=16, temperature=1.5, top_p=0.95)
    a = client.completions.create(seed=7, **kw).choices[0].text
    assert client.completions.create(seed=7, **kw).choices[0].text == a, "a seed repeats a sampled reply"
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in range(8, 12)}
    assert others - {a}, "sampling at temperature 1.5 differs between seeds"


def test_a_request_without_the_key_gets_401(server, client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(server.url + "/models", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}])


def test_bad_requests_are_refused_by_name(client):
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n: only n=1"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=5)


def test_port_in_use_and_hosting_without_a_key_are_refused(folder, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match="--port: .* already in use"):
            check_can_serve("127.0.0.1", port, None)
        assert cli_main(["serve", str(folder), "--port", str(port)]) == 2
        assert "already in use" in capsys.readouterr().err
    with pytest.raises(ServeError, match="--api-key"):
        check_can_serve("0.0.0.0", 0, None)
    check_can_serve("127.0.0.1", 0, None)  # local without a key is fine


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab\n", max_size=30), st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), max_size=3),
       st.lists(st.integers(1, 5), min_size=1, max_size=30))
def test_stop_scanner_cuts_at_the_first_stop_whatever_the_pieces(text, stops, sizes):
    """Generation ends at the piece that completes a stop string (as OpenAI's does, token by
    token); the reply is cut where the earliest stop string in the text so far begins."""
    scanner, out, pos, expected = StopScanner(stops), "", 0, None
    bounds = []
    for n in sizes * 30:
        if pos >= len(text):
            break
        bounds.append(min(pos + n, len(text)))
        pos += n
    start = 0
    for end in bounds:
        out += scanner.feed(text[start:end])
        seen = [text[:end].find(s) for s in stops if s in text[:end]]
        if seen:
            expected = text[:min(seen)]
            break
        start = end
    if expected is None:
        out += scanner.flush()
        expected = text
    assert scanner.hit == (expected != text or any(s in text for s in stops))
    assert out == expected
