"""`--workers N`: N router processes sharing the listener ports through SO_REUSEPORT.

The parent only supervises: it starts the workers with the same flags, passes SIGTERM/SIGINT on, and
exits when they have all exited (with the first non-zero code, if any). When a worker dies on its own the
others are stopped too, so the pod restarts as a whole rather than running short of a core.

Workers share nothing. The kernel spreads new connections over them; each has its own snapshot, endpoint
scrapes, in-flight counts and prefix-cache table, so a worker balances only the requests it sees. Worker k
serves Prometheus metrics on `--metrics-port + k` and the debug dump on `--debug-port + k`; only worker 0
writes Kubernetes status and starts `--simulate` servers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

WORKER_ENV = "KTHENA_ROUTER_WORKER"  # set in each worker's environment: its index


def worker_index() -> int | None:
    """This process's worker index, or None when it is not a worker of a `--workers` parent."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


def supervise(argv: Sequence[str], workers: int) -> int:
    children: list[subprocess.Popen] = []
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        env = dict(os.environ, **{WORKER_ENV: str(index)})
        children.append(subprocess.Popen([sys.executable, "-m", "kthena_router", *argv], env=env))
    log.info("started %d workers: %s", workers, ", ".join(str(child.pid) for child in children))
    code = 0
    while any(child.poll() is None for child in children):
        for child in children:
            status = child.poll()
            if status is not None and status != 0 and not stopping:
                log.error("worker %d exited with %d; stopping the others", child.pid, status)
                code = code or status
                forward(signal.SIGTERM, None)
        time.sleep(0.1)
    for child in children:
        if child.returncode and not code:
            code = child.returncode if child.returncode > 0 else 0
    return code
