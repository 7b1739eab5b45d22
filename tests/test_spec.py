import pytest

from studio.presets import default_spec, list_presets, load_run
from studio.spec import DataSource, RunSpec, SpecError


def fields(problems):
    return {p.field for p in problems}


def test_default_spec_is_valid_and_round_trips_through_yaml():
    spec = default_spec()
    assert spec.validate() == []
    again = RunSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert isinstance(again.data.sources[0], DataSource)


def test_every_recipe_preset_loads():
    for name in list_presets("recipes"):
        if name == "sizes":
            continue
        load_run(name)


def test_overrides_coerce_types_and_name_unknown_fields():
    spec = default_spec().with_overrides(["train.max_steps=60", "model.dropout=0.1", "data.packing=true"])
    assert spec.train.max_steps == 60 and spec.model.dropout == 0.1 and spec.data.packing is True
    with pytest.raises(SpecError) as err:
        default_spec().with_overrides(["train.max_stepz=60"])
    assert err.value.field == "train.max_stepz" and "max_steps" in err.value.fix
    with pytest.raises(SpecError) as err:
        default_spec().with_overrides(["train.batch_size=abc"])
    assert err.value.field == "train.batch_size"
    with pytest.raises(SpecError):
        RunSpec.from_dict({"model": {"d_model": 12.5}})


@pytest.mark.parametrize("changes, field", [
    ({"model.d_model": 130}, "model.d_model"),
    ({"model.attention": "mqa", "model.n_kv_heads": 2}, "model.n_kv_heads"),
    ({"model.attention": "gqa", "model.n_kv_heads": 3}, "model.n_kv_heads"),
    ({"model.attention": "mha", "model.n_kv_heads": 2}, "model.n_kv_heads"),
    ({"model.positional_encoding": "yarn"}, "model.yarn_factor"),
    ({"model.dropout": 1.5}, "model.dropout"),
    ({"method.name": "nope"}, "method.name"),
    ({"method.name": "ppo", "method.regime": "prefix"}, "method.regime"),
    ({"method.name": "distill", "method.teacher": ""}, "method.teacher"),
    ({"train.learning_rate": 0}, "train.learning_rate"),
    ({"train.save_best_only": True, "train.eval_every": 0}, "train.save_best_only"),
    ({"data.sources": []}, "data.sources"),
    ({"name": "../evil"}, "name"),
    ({"data.sources": [{"path": "assets/data/missing.jsonl"}]}, "data.sources.0.path"),
    ({"method.name": "grpo", "model.source": "pretrained", "model.name_or_path": "x", "method.reward": "bogus"},
     "method.reward"),
    ({"method.name": "ppo", "model.source": "pretrained", "model.name_or_path": "x",
      "method.reward": "exact_match, bogus"}, "method.reward"),
    ({"method.name": "kto", "model.source": "pretrained", "model.name_or_path": "x",
      "method.undesirable_weight": 0}, "method.undesirable_weight"),
])
def test_impossible_settings_are_reported_by_field(changes, field):
    data = default_spec().to_dict()
    for path, value in changes.items():
        node = data
        *head, last = path.split(".")
        for part in head:
            node = node[part]
        node[last] = value
    problems = RunSpec.from_dict(data).validate()
    assert field in fields(problems), problems
    assert all(p.message for p in problems)


def test_a_path_outside_the_data_roots_is_refused_when_hosted(monkeypatch):
    # locally any readable file is the person's own (#25.4); a hosted server confines paths
    data = default_spec().to_dict()
    data["data"]["sources"] = [{"path": "/etc/passwd"}]
    monkeypatch.setenv("STUDIO_HOSTED", "1")
    assert "data.sources.0.path" in fields(RunSpec.from_dict(data).validate())


def test_several_reward_presets_may_be_summed():
    data = default_spec().to_dict()
    data["model"].update(source="pretrained", name_or_path="x")
    data["method"].update(name="grpo", reward="exact_match, closeness")
    assert "method.reward" not in fields(RunSpec.from_dict(data).validate())


def test_on_and_off_stay_switch_words_from_the_command_line_and_from_yaml(tmp_path):
    spec = default_spec().with_overrides(["train.gradient_checkpointing=off"])
    assert spec.train.gradient_checkpointing == "off" and not spec.validate()
    assert default_spec().with_overrides(["train.gradient_checkpointing=on"]).train.gradient_checkpointing == "on"
    path = tmp_path / "spec.yaml"
    path.write_text(default_spec().to_yaml().replace("gradient_checkpointing: auto", "gradient_checkpointing: off"))
    assert RunSpec.load(path).train.gradient_checkpointing == "off"
