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
