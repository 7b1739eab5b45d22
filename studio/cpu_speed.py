"""How fast this CPU trains, for the Model tab's time estimate on a machine without a
GPU: measured on the newest completed run (its median tokens/s times its FLOPs per
token), else a short matrix-multiply probe. No torch: numpy only, ~0.2 s."""
from __future__ import annotations

import statistics
import time

PROBE_UTILISATION = 0.4  # a probe measures peak matmul speed; training reaches a share of it


def from_last_run(runs_dir=None) -> dict | None:
    """{flops_per_second, tokens_per_second, source} from the newest completed run that
    logged tokens/s; None when there is none."""
    from studio import jobs
    from studio.estimate import estimate
    from studio.metrics import read_all
    from studio.spec import RunSpec

    try:
        rows = jobs.list_runs(runs_dir)
    except jobs.JobError:
        return None
    for row in rows:
        if row["state"] != "completed":
            continue
        try:
            tps = [r["tokens_per_second"] for r in read_all(jobs.run_path(row["run_id"], runs_dir))
                   if r.get("kind") == "train" and isinstance(r.get("tokens_per_second"), (int, float))]
            if not tps:
                continue
            fpt = estimate(RunSpec.load(jobs.run_path(row["run_id"], runs_dir) / "spec.yaml"))["flops_per_token"]
        except Exception:  # noqa: BLE001 - a run that cannot be read is skipped, not fatal to the tab
            continue
        rate = statistics.median(tps)
        return {"flops_per_second": rate * fpt, "tokens_per_second": rate, "utilisation": 1.0,
                "source": f"measured: {rate:,.0f} tokens/s on run {row['run_id']}"}
    return None


def probe(seconds: float = 0.2) -> dict:
    """Peak float32 matmul speed of this process's threads."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        n += 1
    flops = n * 2 * 256**3 / (time.perf_counter() - start)
    return {"flops_per_second": flops, "utilisation": PROBE_UTILISATION,
            "source": f"probe: {flops / 1e9:,.0f} GFLOP/s matmul peak"}


def this_cpu(runs_dir=None) -> dict:
    """The measured speed when a run has shown it, else the probe's."""
    return from_last_run(runs_dir) or probe()
