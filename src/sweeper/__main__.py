"""``python -m sweeper`` and the ``sweeper`` command."""

from sweeper.frozen_imports import imports_frozen


def main() -> None:
    with imports_frozen():
        from sweeper.app import cli
    cli()


if __name__ == "__main__":
    main()
