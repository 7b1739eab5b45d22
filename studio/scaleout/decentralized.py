"""Decentralized training on hivemind (#24): N peer processes, each on its own data, find
each other through hivemind's DHT and average their trainable tensors with hivemind's
DecentralizedAverager every K local steps (DiLoCo-style local steps, then a group
all-reduce). There is no server: the worker only starts the first DHT node, starts the
peers and merges their metric lines into the run's one stream. A peer that dies leaves
the group (the others' round times out and they go on); a peer started later with
--join fetches the current tensors from a running peer (load_state_from_peers) first.

  python -m studio.scaleout.decentralized peer SPEC.yaml --index I --out DIR --initial-peers MADDR [--join]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from studio import stopping
from studio.scaleout import env
from studio.scaleout.local import LocalTrainer, check_method, client_specs
from studio.spec import RunSpec

PEERS_DIR = "peers"


def peer_specs(spec: RunSpec) -> list[RunSpec]:
    """Several data sources: one peer each; one source: `peers` shards of it."""
    dec = spec.train.decentralized
    return client_specs(spec, 0 if len(spec.data.sources) > 1 else dec.peers)


def dht(host: str, initial_peers: list[str]):
    import hivemind

    # announce and listen on `host` only; no NAT port mapping, AutoNAT or relays, which
    # would reach past this machine
    return hivemind.DHT(initial_peers=initial_peers, host_maddrs=[f"/ip4/{host}/tcp/0"], start=True,
                        nat_port_map=False, auto_nat=False, use_relay=False)


def peer_command(spec_path, index: int, out: Path, maddrs: list[str], join: bool = False) -> list[str]:
    cmd = [env.python(), "-m", "studio.scaleout.decentralized", "peer", str(spec_path), "--index", str(index),
           "--out", str(out), "--initial-peers", ",".join(maddrs)]
    return cmd + (["--join"] if join else [])


def run_decentralized(ctx) -> None:
    spec = ctx.spec
    check_method(spec, "train.decentralized.enabled")
    n = len(peer_specs(spec))
    env.quiet_engines()
    out = ctx.run_dir / PEERS_DIR
    out.mkdir(exist_ok=True)
    extra = [m for m in spec.train.decentralized.initial_peers.split(",") if m.strip()]
    node = dht(spec.train.decentralized.host, extra)  # the first node; the peers join through it
    maddrs = [str(a) for a in node.get_visible_maddrs()]
    (out / "dht.txt").write_text("\n".join(maddrs) + "\n")  # for a peer that joins later
    procs = [env.spawn(peer_command(ctx.run_dir / "spec.yaml", i, out, maddrs), out / f"peer-{i}.log")
             for i in range(n)]
    print(f"Decentralized: {n} peers through the DHT at {maddrs[0]}", flush=True)
    try:
        follow(ctx, out, procs, spec.train.max_steps)
    finally:
        env.stop_all(procs)
        node.shutdown()
    finished = sorted(out.glob("peer-*/final"))
    if not finished:
        raise RuntimeError(f"no peer finished; see {PEERS_DIR}/peer-*.log in the run folder")
    os.replace(finished[0], ctx.final_dir)  # every finisher holds the last average; the first is kept


def follow(ctx, out: Path, procs, total: int) -> None:
    """Merge the peers' metric lines into metrics.jsonl until every peer (including ones
    that joined later and wrote a pid file) has exited."""
    offsets: dict[Path, int] = {}
    while True:
        for path in sorted(out.glob("peer-*.jsonl")):
            peer = path.stem.split("-", 1)[1]
            with open(path, encoding="utf-8") as f:
                f.seek(offsets.get(path, 0))
                for line in f:
                    if not line.endswith("\n"):
                        break
                    offsets[path] = offsets.get(path, 0) + len(line.encode())
                    rec = json.loads(line)
                    ctx.log({"step": rec["step"], **{f"peer/{peer}/{k}": v for k, v in rec.items() if k != "step"}})
                    if peer == "0":
                        ctx.progress(rec["step"], total)
        if all(p.poll() is not None for p in procs) and not any(_alive(p) for p in out.glob("peer-*.pid")):
            return
        if ctx.should_stop():
            return
        time.sleep(0.5)


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (ValueError, OSError):
        return False
    try:  # reap a child of ours that exited (a peer started here)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours: a peer that joined from a shell
        pass
    return stopping.running(pid)  # an exited, unreaped peer is a zombie: gone


def run_peer(spec_path: str, index: int, out: Path, initial_peers: list[str], join: bool) -> None:
    env.quiet_engines()
    from hivemind.averaging import DecentralizedAverager

    spec = RunSpec.load(spec_path)
    dec = spec.train.decentralized
    specs = peer_specs(spec)
    # a peer that joins later (index past the started ones) takes the data of peer
    # index % N: its own copy of that shard or source
    one = specs[index % len(specs)]
    shard = (index % len(specs), len(specs)) if len(spec.data.sources) == 1 else None
    local = LocalTrainer(one, shard=shard)
    (out / f"peer-{index}.pid").write_text(str(os.getpid()))
    node = dht(dec.host, initial_peers)
    # room for one more than the peers started here: with a group exactly their size they
    # fill it at once every round and a peer that joins later only ever averages alone
    # (measured: 10 rounds, group size 1 each); without a joiner a round now waits out
    # min_matchmaking_time before it starts
    averager = DecentralizedAverager([t.detach().clone() for t in _tensors(local)], node, start=True,
                                     prefix=f"studio_{Path(spec_path).parent.name.replace('.', '_')}",
                                     target_group_size=len(specs) + 1, min_group_size=2,
                                     min_matchmaking_time=2.0, request_timeout=1.0,
                                     allreduce_timeout=dec.averaging_timeout)
    log = open(out / f"peer-{index}.jsonl", "a", encoding="utf-8")
    if join:  # a late peer starts from the group's current tensors
        state = averager.load_state_from_peers(timeout=dec.averaging_timeout)
        if state is not None:
            _copy_in(local, state[1])
    step = 0
    try:
        while step < spec.train.max_steps:
            k = min(dec.average_every, spec.train.max_steps - step)
            loss = local.train_steps(k)
            step += k
            group = average(local, averager, dec.averaging_timeout)
            rec = {"step": step, "loss": loss, "group_size": group, "eval_loss": local.eval_loss()}
            log.write(json.dumps(rec) + "\n")
            log.flush()
        local.save(out / f"peer-{index}")
    finally:
        averager.shutdown()
        node.shutdown()


def _tensors(local: LocalTrainer):
    return [local.params[n] for n in local.names]


def _copy_in(local: LocalTrainer, tensors) -> None:
    import torch

    with torch.no_grad():
        for p, t in zip(_tensors(local), tensors):
            p.copy_(t)


def average(local: LocalTrainer, averager, timeout: float) -> int:
    """One all-reduce with whoever is in the group now; 1 (alone) when no group formed or a
    member died mid-round (hivemind raises or returns None): the peer trains on."""
    import torch

    with averager.get_tensors() as shared, torch.no_grad():
        for s, p in zip(shared, _tensors(local)):
            s.copy_(p)
    try:
        result = averager.step(timeout=timeout, allow_retries=False)
    except Exception as exc:  # noqa: BLE001 - a failed round must not end the peer
        print(f"averaging failed ({type(exc).__name__}: {exc}); training on alone", flush=True)
        return 1
    if not result:
        return 1
    with averager.get_tensors() as shared:
        _copy_in(local, shared)
    return len(result)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.scaleout.decentralized")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peer", help="one peer: trains on its data and averages with the others")
    p.add_argument("spec")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for this peer's metrics, log and final model")
    p.add_argument("--initial-peers", required=True, help="comma-separated multiaddrs of the DHT")
    p.add_argument("--join", action="store_true", help="joining mid-run: fetch the group's tensors first")
    args = ap.parse_args(argv)
    run_peer(args.spec, args.index, Path(args.out), [m for m in args.initial_peers.split(",") if m], args.join)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
