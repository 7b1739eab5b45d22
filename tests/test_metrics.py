import json

from studio.metrics import MetricsTail, MetricsWriter, read_all


def test_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []  # no file yet
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')
    first = tail.read_new()
    assert [r["step"] for r in first] == [1]
    with open(path, "a") as f:
        f.write('ss": 1.5}\n')
    assert [r["loss"] for r in tail.read_new()] == [1.5]
    assert tail.read_new() == []


def test_torn_line_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    assert [r["step"] for r in MetricsTail(path).read_new()] == [1, 3]


def test_writer_renames_cleans_and_derives_throughput(tmp_path, monkeypatch):
    clock = iter([100.0, 101.0, 103.0])
    monkeypatch.setattr("studio.metrics.time.time", lambda: next(clock))
    w = MetricsWriter(tmp_path, start_time=100.0)
    w.write({"step": 1, "loss": float("nan"), "num_input_tokens_seen": 1000})
    w.write({"step": 2, "loss": 1.0, "num_input_tokens_seen": 3000})
    w.write({"step": 2, "train_loss": 1.2, "train_runtime": 3.0, "total_flos": 5}, kind="summary")
    recs = read_all(tmp_path)
    assert recs[0]["loss"] is None and recs[0]["num_tokens"] == 1000
    assert recs[1]["tokens_per_second"] == 2000.0  # 2000 tokens over 2 seconds
    assert recs[2]["kind"] == "summary" and recs[2]["loss"] == 1.2 and "total_flos" not in recs[2]


def test_callback_classifies_step_eval_and_summary_logs(tmp_path):
    from types import SimpleNamespace

    from studio.metrics import make_callback

    w = MetricsWriter(tmp_path)
    cb = make_callback(w)
    state = SimpleNamespace(is_world_process_zero=True, global_step=3, epoch=0.5, num_input_tokens_seen=0)
    cb.on_log(None, state, None, logs={"loss": 2.0, "train_runtime": 9.0, "train_tokens_per_second": 5.0,
                                       "num_input_tokens_seen": 100})
    cb.on_log(None, state, None, logs={"eval_loss": 1.0})
    cb.on_log(None, state, None, logs={"train_loss": 1.5, "train_runtime": 9.0})
    recs = read_all(tmp_path)
    assert [r["kind"] for r in recs] == ["train", "eval", "summary"]
    assert "runtime" not in recs[0] and recs[0]["loss"] == 2.0
    assert abs(recs[1]["perplexity"] - 2.718281828) < 1e-6
