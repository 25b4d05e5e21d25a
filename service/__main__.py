"""`python -m service`: serve the retrieval API (see `python -m service --help`); `python -m service COMMAND ...`
runs one of COMMANDS instead."""
from __future__ import annotations

import logging
import sys

from service import reindex
from service.app import create_app
from service.config import config_from_args
from service.server import serve


def _import(argv: list[str]) -> int:
    from service.bulk_import import main as run

    return run(argv)


def _bulk_ingest(argv: list[str]) -> int:
    from service.bulk_ingest import main as run  # Ray is an optional extra: imported only for this command

    return run(argv)


COMMANDS = {"reindex": reindex.main, "import": _import, "bulk-ingest": _bulk_ingest}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    try:
        config = config_from_args(argv)
        app = create_app(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m service: {err}", file=sys.stderr)
        return 2
    serve(app, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
