"""Federated fine-tuning on Flower (#24): the worker is the Flower server, each client a
process of its own that reads only its data and sends back its trainable tensors.

Flower 1.42's simulation engine runs only on Ray (flwr.server.superlink.fleet.vce
builds a RayBackend unconditionally), a large install that starts a cluster per run; so
one machine runs Flower's gRPC server (flwr.server.start_server) and N client processes
(flwr.client.start_client) on 127.0.0.1 — the same engine and protocol, and the same
commands start clients on other machines (client_commands). FedAvg and FedProx are
Flower's strategies; the server scores the global model on the held-out rows each round
and writes the one metrics stream (global and per-client loss by round).

  python -m studio.scaleout.federated client SPEC.yaml --index I --server HOST:PORT
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from studio.scaleout import env
from studio.scaleout.local import LocalTrainer, check_method, client_specs
from studio.spec import RunSpec

CLIENT_LOG = "client-{}.log"


def client_names(spec: RunSpec) -> list[str]:
    fed = spec.train.federation
    if fed.clients > 0:
        return [f"shard{i}" for i in range(fed.clients)]
    return [Path(s.path).stem or f"client{i}" for i, s in enumerate(spec.data.sources)]


def client_commands(spec_path: str, spec: RunSpec, address: str) -> list[list[str]]:
    """The command that starts each client (here as subprocesses; on other machines, the
    same line with the server's reachable address and that machine's copy of the spec)."""
    n = len(client_names(spec))
    return [[env.python(), "-m", "studio.scaleout.federated", "client", str(spec_path), "--index", str(i),
             "--server", address] for i in range(n)]


def run_federated(ctx) -> None:
    """The worker's federated branch: start the clients, serve the rounds, save final/."""
    spec = ctx.spec
    fed = spec.train.federation
    check_method(spec, "train.federation.enabled")
    names = client_names(spec)
    client_specs(spec, fed.clients)  # refuses one source without shards, by field
    env.quiet_engines()
    server = LocalTrainer(spec, need_train=False)  # the global model; held-out rows of every client
    address = env.free_address(fed.address)
    procs = [env.spawn(cmd, ctx.run_dir / CLIENT_LOG.format(i))
             for i, cmd in enumerate(client_commands(ctx.run_dir / "spec.yaml", spec, address))]
    print(f"Federated: Flower server on {address}, {len(procs)} clients ({', '.join(names)})", flush=True)
    try:
        params = serve(ctx, server, names, address)
    except SystemExit as exc:
        # Flower's start_server swaps the worker's SIGTERM/SIGINT handler for its own, which
        # exits with code 0 on the signal: that is the run being stopped, not a failure.
        # KeyboardInterrupt, which the worker records as stopped: its Stopped class is
        # __main__'s (python -m studio.worker), not the one an import here would get
        if exc.code in (0, None):
            raise KeyboardInterrupt from None
        raise RuntimeError(f"the Flower server exited with code {exc.code}; see client-*.log in the run "
                           "folder") from None
    finally:
        env.stop_all(procs)
    server.set(params)
    server.save(ctx.run_dir)


def serve(ctx, server: LocalTrainer, names: list[str], address: str):
    import flwr
    from flwr.server.strategy import FedAvg, FedProx

    spec = ctx.spec
    fed = spec.train.federation
    n = len(names)
    checksum = server.frozen_checksum()
    final = {}
    base = FedProx if fed.strategy == "fedprox" else FedAvg

    def evaluate(rnd, arrays, config):
        server.set(arrays)
        final["params"] = [a.copy() for a in arrays]
        loss = server.eval_loss()
        ctx.progress(rnd, fed.rounds)
        return loss, {"eval_loss": loss}

    class Strategy(base):
        def aggregate_fit(self, rnd, results, failures):
            out = super().aggregate_fit(rnd, results, failures)
            record = {"step": rnd, "round": rnd, "clients_ok": len(results), "clients_failed": len(failures)}
            losses = []
            for _, res in results:
                m = res.metrics
                record[f"client/{m['client']}/loss"] = m["loss"]
                record[f"client/{m['client']}/eval_loss"] = m["eval_loss"]
                losses.append((m["loss"], res.num_examples))
            if losses:
                record["loss"] = sum(l * w for l, w in losses) / sum(w for _, w in losses)
            self.pending = record
            return out

        def evaluate(self, rnd, parameters):
            out = super().evaluate(rnd, parameters)
            if out is not None:
                record = getattr(self, "pending", {"step": rnd, "round": rnd})
                record["eval_loss"] = out[0]
                ctx.log(record)
                self.pending = {}
            return out

    kwargs = dict(fraction_fit=fed.client_fraction, fraction_evaluate=0.0,
                  min_fit_clients=max(1, math.ceil(fed.client_fraction * n)), min_evaluate_clients=0,
                  min_available_clients=n, evaluate_fn=evaluate,
                  on_fit_config_fn=lambda rnd: {"round": rnd, "local_steps": fed.local_steps,
                                                "proximal_mu": fed.proximal_mu if fed.strategy == "fedprox" else 0.0,
                                                "checksum": checksum},
                  initial_parameters=flwr.common.ndarrays_to_parameters(server.get()))
    if fed.strategy == "fedprox":
        kwargs["proximal_mu"] = fed.proximal_mu
    flwr.server.start_server(server_address=address, strategy=Strategy(**kwargs),
                             config=flwr.server.ServerConfig(num_rounds=fed.rounds, round_timeout=600))
    if "params" not in final:
        raise RuntimeError("the Flower server ended without a global model; see client-*.log in the run folder")
    return final["params"]


def run_client(spec_path: str, index: int, server_address: str) -> None:
    env.quiet_engines()
    import flwr

    spec = RunSpec.load(spec_path)
    fed = spec.train.federation
    one = client_specs(spec, fed.clients)[index]
    name = client_names(spec)[index]
    local = LocalTrainer(one, shard=(index, fed.clients) if fed.clients > 0 else None)
    checksum = local.frozen_checksum()
    print(f"client {name}: {len(local.train_rows)} rows, {len(local.names)} trainable tensors", flush=True)

    class Client(flwr.client.NumPyClient):
        def get_parameters(self, config):
            return local.get()

        def fit(self, parameters, config):
            if config.get("checksum") not in (None, checksum):
                raise ValueError("this client's frozen base differs from the server's: build it from the same "
                                 "spec (model, seed) as the server")
            local.set(parameters)
            loss = local.train_steps(int(config["local_steps"]), float(config.get("proximal_mu", 0.0)))
            metrics = {"client": name, "loss": loss, "eval_loss": local.eval_loss()}
            return local.get(), len(local.train_rows), metrics

    flwr.client.start_client(server_address=server_address, client=Client().to_client(), insecure=True,
                             max_wait_time=120)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m studio.scaleout.federated")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client", help="one federated client: trains on its data, sends updates")
    c.add_argument("spec")
    c.add_argument("--index", type=int, required=True, help="which client of the spec (0-based)")
    c.add_argument("--server", required=True, help="the server's host:port")
    args = ap.parse_args(argv)
    run_client(args.spec, args.index, args.server)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
