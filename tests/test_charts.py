from studio import charts


def records(n):
    return [{"step": i, "kind": "train", "loss": 5.0 / (i + 1), "learning_rate": 1e-3, "num_tokens": i * 100}
            for i in range(n)]


def test_smoothing_is_bias_corrected_and_bounded():
    ys = [4.0, 2.0, 2.0, 2.0]
    sm = charts.smooth(ys, 0.9)
    assert sm[0] == 4.0  # no drag towards zero at the start
    assert all(min(ys) <= v <= max(ys) for v in sm)
    assert charts.smooth(ys, 0.0) == ys


def test_downsample_keeps_extremes_and_caps_points():
    xs = list(range(10_000))
    ys = [0.0] * 10_000
    ys[4321] = 99.0
    ys[777] = -5.0
    dx, dy = charts.downsample(xs, ys, 1000)
    assert len(dx) <= 1000
    assert 99.0 in dy and -5.0 in dy
    assert dx == sorted(dx)


def test_loss_figure_has_raw_smoothed_and_eval_on_one_axis():
    recs = records(50) + [{"step": 49, "kind": "eval", "eval_loss": 0.3}]
    fig = charts.loss_figure(recs, smoothing=0.5)
    names = [t.name for t in fig.data]
    assert names == ["train loss", "smoothed", "eval loss"]
    assert list(fig.data[0].x) == list(range(50))
    tok = charts.loss_figure(recs, smoothing=0, x="tokens")
    assert list(tok.data[0].x)[:3] == [0, 100, 200]


def test_method_metrics_appear_only_when_emitted_and_group_by_prefix():
    assert charts.method_figure(records(5)) is None
    recs = records(5) + [{"step": 5, "kind": "train", "rewards/chosen": 1.0, "rewards/rejected": -1.0, "kl": 0.1}]
    groups = charts.group_keys(charts.method_keys(recs))
    assert groups == {"rewards": ["rewards/chosen", "rewards/rejected"], "kl": ["kl"]}
    assert charts.method_figure(recs) is not None


def test_eval_loss_shares_the_train_loss_axes():
    recs = records(20) + [{"step": 10, "kind": "eval", "eval_loss": 0.9}, {"step": 19, "kind": "eval", "eval_loss": 0.5}]
    fig = charts.loss_figure(recs, smoothing=0.6, log_y=True)
    axes = {(t.xaxis or "x", t.yaxis or "y") for t in fig.data}
    assert axes == {("x", "y")}, axes  # one pair of axes for train, smoothed and eval
    assert fig.layout.yaxis.type == "log"
    ev = next(t for t in fig.data if t.name == "eval loss")
    assert list(ev.x) == [10, 19] and list(ev.y) == [0.9, 0.5]


def test_ten_thousand_points_are_downsampled_for_display_only():
    recs = records(10_000)
    recs[6000]["loss"] = 50.0  # a spike must survive the downsampling
    fig = charts.loss_figure(recs, smoothing=0.6)
    for trace in fig.data:
        assert len(trace.x) <= charts.MAX_POINTS
    assert 50.0 in list(fig.data[0].y)
    payload = len(fig.to_json())
    assert payload < 150_000, payload  # what the browser gets each redraw stays small
    assert len(recs) == 10_000 and recs[-1]["step"] == 9_999  # the raw records are untouched
    for fig in (charts.signals_figure(recs), charts.method_figure(
            [dict(r, kl=0.1) for r in recs])):
        assert all(len(t.x) <= charts.MAX_POINTS for t in fig.data)


def test_runs_are_overlaid_by_name():
    a, b = records(30), [dict(r, loss=r["loss"] * 2) for r in records(40)]
    fig = charts.loss_figure([], smoothing=0.0, runs={"run-a": a, "run-b": b})
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"run-a train loss", "run-b train loss"}
    assert len(by_name["run-b train loss"].x) == 40
    assert by_name["run-b train loss"].y[5] == 2 * by_name["run-a train loss"].y[5]
