"""Per-reward charts: components from trl's rewards/<name>/mean keys, the zero-variance share and its warning."""
from studio.reward_charts import components, reward_figure, zero_std_warning


def _records(shares):
    return [{"kind": "train", "step": 10 * i, "rewards/json_valid/mean": 0.5 + 0.05 * i,
             "rewards/json_valid/std": 0.1, "rewards/json_match/mean": 0.2, "rewards/json_match/std": 0.3,
             "frac_reward_zero_std": s, "loss": 0.1} for i, s in enumerate(shares)]


def test_reward_figure_has_each_component_and_the_zero_variance_share():
    records = _records([0.1, 0.2, 0.3])
    assert components(records) == ["json_valid", "json_match"]
    fig = reward_figure(records)
    names = [t.name for t in fig.data]
    assert "json_valid" in names and "json_match" in names and "zero-variance groups" in names
    line = next(t for t in fig.data if t.name == "json_valid")
    assert list(line.y) == [0.5, 0.55, 0.6] and list(line.x) == [0, 10, 20]
    # a DPO run's rewards/chosen are not reward components
    assert reward_figure([{"kind": "train", "step": 1, "rewards/chosen": 1.0}]) is None


def test_warning_only_when_the_share_stays_high():
    assert zero_std_warning(_records([0.9] * 4 + [0.5])) == ""
    assert zero_std_warning(_records([0.9] * 3)) == ""  # too few logs to say it stays
    warning = zero_std_warning(_records([0.1, 0.95, 0.9, 0.85, 0.9, 1.0]))
    assert "92%" in warning and "teach nothing" in warning
