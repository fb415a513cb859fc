"""``python -m sweeper.data fetch NAME [NAME ...]``: download the study datasets, verified."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeper.data.fetch import MIRROR_ENV, SOURCES, FetchError, fetch
from sweeper.data.locations import default_data_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.data",
        description="Download datasets from their official locations, check each file against"
        " its published checksum, and put them where dataset=NAME reads them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    where = ", ".join(f"{name}: {default_data_dir(name)}" for name in SOURCES)
    fetch_cmd = commands.add_parser(
        "fetch",
        help="download and verify datasets",
        description=f"Download and verify datasets. Default places: {where}.",
    )
    fetch_cmd.add_argument(
        "names",
        nargs="+",
        choices=list(SOURCES),
        metavar="NAME",
        help=f"one of {', '.join(SOURCES)}",
    )
    fetch_cmd.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="put the files here instead (one NAME only); then run with dataset.data_dir=DIR",
    )
    fetch_cmd.add_argument(
        "--mirror",
        default=None,
        help=f"base URL serving MIRROR/<name>/<file> instead of the official"
        f" locations (default: ${MIRROR_ENV})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.dir is not None and len(args.names) > 1:
        print("error: --dir takes one dataset at a time", file=sys.stderr)
        return 2
    try:
        for name in dict.fromkeys(args.names):
            for line in fetch(name, args.dir, args.mirror):
                print(line, flush=True)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: nothing unverified was put in place; run the same command to resume",
            file=sys.stderr,
        )
        # failures.EXIT_INTERRUPTED's value (128 + SIGINT): the data layer imports nothing of
        # sweeper outside it.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
