"""Decentralized training on hivemind (#24): 3 peers on shards of one source average
through a loopback DHT; one peer is killed mid-run and the other two finish, averaging
in a group of two, with one metrics stream and a final adapter that loads."""
from __future__ import annotations

import os
import signal
import time

import pytest

from studio import jobs, stopping
from tests.scaleout_cases import adapter, describe, finished, needs_engines, scaleout_spec, start_worker, tiny_base

ARITH = "assets/data/arith_sft_train.jsonl"


def peers_spec(tmp_path, name: str, steps: int, k: int, peers: int, timeout: float):
    """A decentralized SFT run on shards of 300 arithmetic rows, on a tiny random base."""
    return scaleout_spec(tiny_base(tmp_path / "base"), [ARITH], {"max_steps": steps, "decentralized": {
        "enabled": True, "peers": peers, "average_every": k, "averaging_timeout": timeout}}, name=name, max_rows=300)


def wait_until_averaged(run_dir, proc, peer: int, timeout: float = 300) -> None:
    """Until peer `peer` has written its first line (one averaging round done)."""
    path, deadline = run_dir / "peers" / f"peer-{peer}.jsonl", time.time() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, (run_dir / "train.log").read_text()[-2000:]
        assert time.time() < deadline, f"peer {peer} did not average in {timeout:.0f} s"
        time.sleep(0.2)


@needs_engines
@pytest.mark.slow
def test_three_peers_one_killed_midrun(tmp_path):
    steps, k = 10, 2
    spec = peers_spec(tmp_path, "dec", steps, k, peers=3, timeout=10)
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        peers = run_dir / "peers"
        wait_until_averaged(run_dir, proc, 2)  # the victim has averaged once with the others
        os.kill(int((peers / "peer-2.pid").read_text()), signal.SIGKILL)
        records = finished(run_dir, proc)

    def series(peer, key):
        return [(r["step"], r[f"peer/{peer}/{key}"]) for r in records if f"peer/{peer}/{key}" in r]

    for survivor in ("0", "1"):
        groups = series(survivor, "group_size")
        assert groups[0] == (k, 3)  # all three averaged first
        assert groups[-1] == (steps, 2)  # the two survivors went on averaging together
    assert series("2", "loss")[-1][0] < steps  # the killed peer stopped early
    assert not (peers / "peer-2" / "final").exists()
    final = adapter(run_dir / "final")
    assert any("lora_B" in name and t.abs().sum() > 0 for name, t in final.items())
    from studio.inference import load

    load(str(run_dir / "final"), device="cpu")


@needs_engines
@pytest.mark.slow
def test_stopping_the_run_stops_every_peer_and_daemon(tmp_path):
    """The studio stops a run by its process group: the peers, the worker's DHT node and
    every hivemind p2pd daemon must be in it, so none outlives studio.jobs.stop."""
    spec = peers_spec(tmp_path, "decstop", 10_000, 2, peers=3, timeout=10)
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        peers = run_dir / "peers"
        deadline = time.time() + 300
        while not all((peers / f"peer-{i}.jsonl").exists() for i in range(3)):  # all three training
            assert proc.poll() is None, (run_dir / "train.log").read_text()[-2000:]
            assert time.time() < deadline, "the peers did not start in 300 s"
            time.sleep(0.2)
        peer_pids = [int((peers / f"peer-{i}.pid").read_text()) for i in range(3)]
        group = jobs.group_members(proc.pid)
        names = " ".join(describe(group))
        assert set(peer_pids) <= set(group) and "p2pd" in names, names  # peers and daemons: one group
        assert jobs.stop(run_dir)["state"] == "stopped"
        left = [pid for pid in {*peer_pids, *group} if stopping.running(pid)]
        assert not left, describe(left)


@needs_engines
@pytest.mark.slow
def test_a_peer_joins_midrun_and_averages_with_the_others(tmp_path):
    """Two peers train; a third started later with --join (the command the Scale-out help
    shows, the DHT address from peers/dht.txt) takes the group's tensors, then averages
    with the others (groups of at most `peers`: with a joiner, hivemind pairs them off
    differently each round), and the run waits for it before it ends. The joiner is not
    the worker's child and stays unreaped until the test waits on it, as a peer started
    from a shell whose parent is busy would: the run must still see it end."""
    import subprocess

    from studio.scaleout import decentralized, env

    # a round takes ~5 s here (3 peers, a worker and p2pd daemons on 2 cores); the joiner
    # needs ~10-25 s to start, and must find the run still going
    steps, k = 20, 2
    spec = peers_spec(tmp_path, "decjoin", steps, k, peers=2, timeout=5)
    with start_worker(spec, tmp_path / "runs") as (run_dir, proc):
        peers = run_dir / "peers"
        wait_until_averaged(run_dir, proc, 0)
        maddrs = (peers / "dht.txt").read_text().split()
        cmd = decentralized.peer_command(run_dir / "spec.yaml", 2, peers, maddrs, join=True)
        with open(peers / "peer-2.log", "ab") as log:  # its own group, as on another machine
            joiner = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env.child_env(),
                                      start_new_session=True)
        try:
            records = finished(run_dir, proc)
            assert joiner.wait(timeout=60) == 0, (peers / "peer-2.log").read_text()[-2000:]
        finally:
            if joiner.poll() is None:
                os.killpg(joiner.pid, signal.SIGKILL)
            joiner.wait()

    def series(peer, key):
        return [(r["step"], r[f"peer/{peer}/{key}"]) for r in records if f"peer/{peer}/{key}" in r]

    assert series("0", "group_size")[0] == (k, 2)  # the two started together
    joined = series("2", "group_size")
    assert len(joined) == steps // k, joined  # the joiner trained its whole run
    assert any(g >= 2 for _, g in joined), joined  # it averaged with the others (alone once they end)
    # it started from the group's tensors, not the base: its first loss is below what
    # the others' was on the base, and near theirs at the time it joined
    first_joined_loss = series("2", "loss")[0][1]
    assert first_joined_loss < series("0", "loss")[0][1] - 0.5, (first_joined_loss, series("0", "loss"))
    assert (run_dir / "final").is_dir()
