"""``python -m sweeper`` and the ``sweeper`` command."""

import sys

from sweeper.frozen_imports import imports_frozen


def main() -> None:
    try:
        with imports_frozen():
            from sweeper.app import cli
    except KeyboardInterrupt:
        # Before the app is loaded nothing is recorded, and its Ctrl-C handling is not there.
        # failures.EXIT_INTERRUPTED's value: importing sweeper.failures loads MLflow, the
        # import this handler has just stopped.
        print("Interrupted (Ctrl-C).", file=sys.stderr, flush=True)
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
