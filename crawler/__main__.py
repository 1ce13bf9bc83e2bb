"""``python -m crawler`` and the ``crawler`` console script: the command line, and a Ctrl-C that
comes while Python is still importing it."""

import sys

# crawler.cli says the same once it is imported; a Ctrl-C before that is told here.
STOPPED_EARLY = "stopped before the crawl began; nothing was lost"
EXIT_STOPPED = 3  # crawler.summary.EXIT_STOPPED, not imported: the Ctrl-C may come during it


def entry() -> None:
    """Run the command line; a Ctrl-C while it loads is one line and exit 3, not a traceback."""
    try:
        from crawler.cli import main  # noqa: PLC0415 - the import is what may be interrupted
    except KeyboardInterrupt:
        sys.stderr.write(f"{STOPPED_EARLY}\n")
        sys.exit(EXIT_STOPPED)
    main()


if __name__ == "__main__":
    entry()
