"""A Beam worker pool for the FlinkRunner's EXTERNAL environment, on one address only:
``python -m pipeline.worker_pool --address 127.0.0.1:50000``.

Flink's TaskManagers ask the pool for a Python SDK worker per environment; the pool starts
each as a child process. Beam's own ``worker_pool_main`` listens on every interface and
starts whichever ``python`` comes first on the PATH, so a pool started from a shell could
serve the network and run workers without crackscan installed. This one listens where it is
told and starts its workers with the interpreter it runs in, and ends them when it is
stopped, so that stopping the pool by its process id leaves no worker behind.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import (BeamFnExternalWorkerPoolServicer,
                                                         kill_process_gracefully)
from apache_beam.utils import thread_pool_executor

from crackscan import cli, verbosity


def serve(address: str) -> None:
    """Serves until SIGTERM or SIGINT, then ends every worker it started."""
    # Beam's servicer runs the bare name ``python``: this interpreter's folder first on the
    # PATH makes that the environment crackscan is installed in.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    pool = BeamFnExternalWorkerPoolServicer(use_process=True)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    if not server.add_insecure_port(address):
        raise SystemExit(f"pipeline.worker_pool: cannot listen on {address}")
    server.start()
    logging.info("worker pool listening on %s, pid %d", address, os.getpid())
    stopped = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.info("worker pool stopping on signal %d", signum)
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.stop(0)
    for worker in list(pool._worker_processes.values()):
        kill_process_gracefully(worker, timeout=5)


def main(argv: list[str] | None = None) -> None:
    parser = cli.command_parser("pipeline.worker_pool", __doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50000",
                        help="HOST:PORT to listen on (default: 127.0.0.1:50000, loopback only)")
    args = cli.parse_args(parser, argv)
    verbosity.configure(argv)
    serve(args.address)


if __name__ == "__main__":
    main()
