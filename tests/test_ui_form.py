import pytest

from studio.presets import default_spec
from studio.spec import SpecError


def test_form_values_map_back_to_the_spec():
    from studio.ui import form
    spec = default_spec()
    paths = ["model.d_model", "train.max_steps", "data.sources", "model.sliding_window"]
    values = [256.0, 12.0, "assets/data/arith_sft_train.jsonl | | 2\nassets/data/corpus_train.jsonl", ""]
    out = form.spec_from_values(paths, values, spec)
    assert out.model.d_model == 256 and isinstance(out.model.d_model, int)
    assert out.train.max_steps == 12
    assert [s.weight for s in out.data.sources] == [2.0, 1.0]
    assert out.model.sliding_window is None
    with pytest.raises(SpecError) as err:
        form.spec_from_values(["train.batch_size"], ["lots"], spec)
    assert err.value.field == "train.batch_size"


def test_reward_choices_and_help_example_are_what_validation_accepts():
    import re

    from studio.rewards import PRESETS, unknown_rewards
    from studio.ui import form

    widget = form.widget("method.reward", "exact_match")
    assert [c[0] if isinstance(c, tuple) else c for c in widget.choices] == list(PRESETS)
    example = re.findall(r"'([^']+)'", widget.info)
    assert example and "," in example[0] and unknown_rewards(example[0]) == []


def test_loss_type_help_examples_are_what_the_methods_accept():
    import re

    from studio.methods.preference import dpo_loss_types, kto_loss_type, simpo_nll_weight
    from studio.ui import form

    info = form.widget("method.loss_type", "sigmoid").info
    examples = re.findall(r"'([^']+)'", info)  # the quoted spellings the help offers
    assert examples == ["sft", "sigmoid, sft", "simpo, sft"]
    assert dpo_loss_types(examples[1]) == ["sigmoid", "sft"]
    assert simpo_nll_weight(examples[2]) == 1.0
    dpo_named = info.split("DPO:")[1].split("...")[0]  # "sigmoid, ipo, hinge, "
    assert len(dpo_loss_types(dpo_named.strip(" ,"))) == 3
    kto_part = info.split("KTO:")[1].split(".")[0]
    assert [kto_loss_type(n) for n in re.findall(r"[a-z_]+", kto_part) if n != "or"] == ["kto", "apo_zero_unpaired"]
