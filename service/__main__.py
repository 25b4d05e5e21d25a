"""`python -m service`: serve the retrieval API with uvicorn (see `python -m service --help`)."""
from __future__ import annotations

import logging
import sys

import uvicorn

from service.app import create_app
from service.config import config_from_args


def _import(argv: list[str]) -> int:
    from service.bulk_import import main as run

    return run(argv)


def _bulk_ingest(argv: list[str]) -> int:
    from service.bulk_ingest import main as run

    return run(argv)


# `python -m service NAME ...`: one entry per subcommand
SUBCOMMANDS = {"import": _import, "bulk-ingest": _bulk_ingest}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    try:
        config = config_from_args(argv)
        app = create_app(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m service: {err}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=config.host, port=config.port, log_level="info", timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
