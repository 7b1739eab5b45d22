"""`python -m studio.ship._serve_child PARENT_PID MODEL --host H --port P`: the app's
background API server. It is `python -m studio serve`, plus a watchdog that ends this
process when the app that started it is gone (killed without running its atexit), so a
server never outlives its toggle."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(0, signal.SIGTERM)  # our own group only (started with start_new_session)


def main(argv: list[str]) -> int:
    parent = int(argv[0])
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    from studio.cli import main as studio_main

    return studio_main(["serve", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
