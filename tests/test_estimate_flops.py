"""FLOPs per token against torch's FLOP counter, and the time arithmetic."""
from __future__ import annotations

import pytest
import torch

from studio import estimate as est
from studio.spec import MethodSpec, ModelSpec


def test_flops_per_token_is_six_n_plus_attention():
    from torch.utils.flop_counter import FlopCounterMode

    import studio.model as sm

    spec = ModelSpec(vocab_size=128, d_model=64, n_heads=4, n_kv_heads=4, attention="mha", d_ff=160, n_layers=2)
    model = sm.build_model(spec).train()
    batch, seq = 2, 32
    ids = torch.randint(0, 128, (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    counted = counter.get_total_flops() / (batch * seq)
    inv = est.inventory(spec)
    # every matrix product of forward and backward: 6 x the matmul weights per token
    # (torch's counter has no formula for the CPU attention kernel, so that part is checked by formula)
    assert counted == 6 * est.matmul_parameters(inv)
    attention = 12 * spec.n_layers * seq * spec.d_model
    assert est.flops_per_token(inv, seq) == counted + attention
    assert est.flops_per_token(inv, seq, training=False) == (counted + attention) / 3
    assert est.flops_per_token(inv, seq, MethodSpec(regime="lora")) == 2 * (counted + attention) / 3


def test_estimate_time_arithmetic():
    out = est.estimate_time(tokens=1e9, flops_per_token=6e9, peak_tflops=1000, utilisation=0.5)
    assert out["tokens_per_second"] == pytest.approx(1000e12 * 0.5 / 6e9)
    assert out["seconds"] == pytest.approx(1e9 / out["tokens_per_second"])
    with pytest.raises(est.EstimateError):
        est.estimate_time(1, 1, peak_tflops=100, utilisation=0)

