"""Serve a search's study storage over gRPC (Optuna's storage proxy), so that workers on other
machines report to their trials with ``hydra.sweeper.storage=grpc://HOST:PORT`` and need no
database driver, no database credentials and no shared filesystem for the study.

    python -m hydra_plugins.sweeper_search.proxy sqlite:////srv/optuna/optuna.db \
        --host 10.0.0.5 --port 13000
"""

from __future__ import annotations

import argparse
import socket
import sys
import warnings
from collections.abc import Sequence

import optuna

from hydra_plugins.sweeper_search.study import (
    GRPC_SCHEME,
    StudyConfigError,
    make_storage,
    quiet_optuna,
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hydra_plugins.sweeper_search.proxy",
        description="Serve an Optuna RDB storage to the search's workers over gRPC.",
    )
    parser.add_argument("storage", help="the study's RDB URL, e.g. sqlite:////srv/optuna.db")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=13000)
    args = parser.parse_args(argv)
    if args.storage.startswith(GRPC_SCHEME):
        parser.error("the storage to serve is an RDB URL, not another proxy")
    try:
        storage = make_storage(args.storage)
    except StudyConfigError as err:
        parser.exit(1, f"{err}\n")
    quiet_optuna()
    # Optuna marks the proxy experimental; its user is told so once, not at each call.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    # gRPC binds inside the call that then serves until stopped: the address is tried first,
    # so that "Serving" is printed only where the proxy can listen.
    try:
        with socket.create_server((args.host, args.port)):
            pass
        print(f"Serving {args.storage} at grpc://{args.host}:{args.port}", flush=True)
        # get_storage: the proxy keeps finished trials in memory, as Optuna advises.
        optuna.storages.run_grpc_proxy_server(
            optuna.storages.get_storage(storage), host=args.host, port=args.port
        )
    except (OSError, RuntimeError) as err:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {err}\n")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
