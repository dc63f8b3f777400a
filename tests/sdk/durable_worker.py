"""A pipeline process for the durability tests: runs decorated calls, then ends as it is told.

    python tests/sdk/durable_worker.py MODE TAG [N] [DELAY_S]

MODE: ``sigterm``, ``sigint``, ``kill9``, ``exit`` (``os._exit(0)``), ``normal``, or a pool kind
(``pool-fork``, ``pool-spawn``, ``pool-forkserver``, ``executor``, ``joblib``): the decorated
function mapped over N items in 4 workers. TAG names the component (``step-TAG``). Settings come
from the environment (MLTRACE_DIR, OTEL_EXPORTER_OTLP_ENDPOINT). Prints ``returned`` once the
calls returned, before ending.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import mltrace_otel as mltrace


def make(tag: str):  # noqa: ANN201
    @mltrace.register(f"step-{tag}", output_vars=["out"])
    def step(i: int) -> int:
        out = f"{tag}/item-{i}"  # noqa: F841 - read by the decorator
        return i

    return step


def _pool_run(i: int) -> int:
    return make(os.environ["DURABLE_TAG"])(i)


def main(mode: str, tag: str, n: int, delay: float) -> None:
    os.environ["DURABLE_TAG"] = tag
    if mode.startswith("pool-"):
        import multiprocessing as mp

        with mp.get_context(mode[5:]).Pool(4) as pool:
            assert sorted(pool.map(_pool_run, range(n))) == list(range(n))
        print("returned", flush=True)
        return
    if mode == "executor":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(4) as ex:
            assert sorted(ex.map(_pool_run, range(n))) == list(range(n))
        print("returned", flush=True)
        return
    if mode == "joblib":
        from joblib import Parallel, delayed

        assert sorted(Parallel(n_jobs=4)(delayed(_pool_run)(i) for i in range(n))) == list(range(n))
        print("returned", flush=True)
        return
    step = make(tag)
    for i in range(n):
        step(i)
    print("returned", flush=True)
    if delay:
        time.sleep(delay)
    if mode == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif mode == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    elif mode == "kill9":
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "exit":
        os._exit(0)
    time.sleep(5)  # a signal's default action ends the process here


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1,
         float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
