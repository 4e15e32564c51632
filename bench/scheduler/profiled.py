"""Run an agent module under cProfile, switched on and off by signals, so that a
benchmark profiles one phase only (not start-up or preloading):

    python bench/scheduler/profiled.py [--now] OUT.prof agents.apiserver --etcd-servers …

SIGUSR1 starts profiling the main thread (where the agent's event loop runs; `--now`:
from the start); SIGUSR2 stops it and writes OUT.prof (pstats format:
`python -m pstats OUT.prof`). The module runs as `python -m MODULE` would, from the
repository root.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    argv = sys.argv[1:]
    now = argv[:1] == ["--now"]
    if now:
        argv = argv[1:]
    if len(argv) < 2:
        sys.exit("usage: profiled.py [--now] OUT.prof MODULE [ARGS…]")
    out, module = argv[0], argv[1]
    profiler = cProfile.Profile()

    def start(_sig, _frame):
        profiler.enable()

    def stop(_sig, _frame):
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *argv[2:]]
    sys.path.insert(0, ROOT)
    if now:
        profiler.enable()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
