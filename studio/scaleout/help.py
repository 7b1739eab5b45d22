"""What the Train tab's Scale-out section says about a spec (#24): the four ways to run,
one paragraph each, what each client/peer needs, the commands for several machines and
what leaves a client. Pure: no torch, no engine import (the UI calls it on every edit)."""
from __future__ import annotations

MODES = {
    "One machine": "One training process on this machine's CPU or GPU. The simplest and the fastest "
                   "for data that can sit in one place.",
    "Several GPUs": "The same run split over several processes (one per GPU, or several machines) with "
                    "accelerate: DDP, ZeRO or FSDP. Every process sees a share of the same data; gradients "
                    "are combined every step.",
    "Federated": "Each client (a data source, or a shard of one) trains on its own rows for a few local "
                 "steps and sends only its updated trainable tensors (the LoRA adapter by default) to a "
                 "Flower server, which averages them (FedAvg, or FedProx that keeps clients near the "
                 "global model) and scores the global model each round.",
    "Decentralized": "Peers train on their own data and, every K local steps, average their trainable "
                     "tensors with whichever peers are reachable, through a hivemind DHT: no server. A peer "
                     "that drops out leaves the others training; a new one can join mid-run.",
}

PRIVACY = ("What leaves a client or peer: its trainable parameters after local steps (an adapter: "
           "small), never its rows. Updates can still leak facts about the data they were trained on; "
           "there is no secure aggregation or differential privacy here, so the server (or the other "
           "peers) sees each update in the clear. The server's evaluation reads the held-out rows on "
           "the machine it runs on.")


def _estimate(spec) -> str:
    try:
        from studio.estimate import estimate

        report = estimate(spec)
        total = report["memory_bytes"]["total"]
        update = report["trainable_parameters"] * 4  # fp32 tensors sent each round
    except Exception:  # noqa: BLE001 - help text must never fail the page
        total = update = None
    from studio.units import human_bytes

    need = human_bytes(total) if total else "what the Model tab estimates for one run"
    sent = f" Each round it sends and receives about {human_bytes(update)} (its trainable tensors)." if update else ""
    return f"Each client/peer needs about {need} of memory: a whole copy of the model trains in each.{sent}"


def scaleout_help(spec) -> str:
    """Markdown for the Scale-out section, for the spec as it stands."""
    fed, dec = spec.train.federation, spec.train.decentralized
    lines = [f"**{name}.** {text}" for name, text in MODES.items()]
    sources = len(spec.data.sources)
    if fed.enabled:
        n = fed.clients or sources
        lines.append(f"**This run:** federated, {n} clients ({'shards of one source' if fed.clients else 'one per data source'}), "
                     f"{fed.rounds} rounds of {fed.local_steps} local steps, {fed.strategy}, "
                     f"{fed.client_fraction:.0%} of the clients each round.")
        lines.append("**Several machines:** start the run here (its server listens on "
                     f"`{fed.address}`; set a reachable host:port), then on each client machine, with a copy "
                     "of the spec and that client's data: `python -m studio.scaleout.federated client "
                     "spec.yaml --index I --server HOST:PORT`.")
    elif dec.enabled:
        n = sources if sources > 1 else dec.peers
        lines.append(f"**This run:** decentralized, {n} peers, averaging every {dec.average_every} local steps "
                     f"(a round waits at most {dec.averaging_timeout:g} s).")
        lines.append("**Several machines:** on each, `python -m studio.scaleout.decentralized peer spec.yaml "
                     "--index I --out DIR --initial-peers MADDR --join`, with MADDR from the run's "
                     "peers/dht.txt and a `host` the others can reach.")
    lines.append(_estimate(spec))
    lines.append(f"**Privacy.** {PRIVACY}")
    return "\n\n".join(lines)
