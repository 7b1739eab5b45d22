"""Scale-out beyond one process (#24): federated fine-tuning on Flower
(studio.scaleout.federated) and decentralized training on hivemind
(studio.scaleout.decentralized). Importing this package loads neither engine nor torch:
the UI calls scaleout_help(spec)."""
from studio.scaleout.help import scaleout_help


def run_federated(ctx) -> None:
    from studio.scaleout.federated import run_federated as run

    run(ctx)


def run_decentralized(ctx) -> None:
    from studio.scaleout.decentralized import run_decentralized as run

    run(ctx)


__all__ = ["run_decentralized", "run_federated", "scaleout_help"]
