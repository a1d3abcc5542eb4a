"""One logging configuration for the CLI's process and every uvicorn worker.

uvicorn starts each worker of ``--workers N`` as a fresh interpreter that configures
logging from the ``log_config`` it is handed and from nothing else, so the same dict goes
to the parent and to uvicorn: one worker and N workers then log exactly the same lines
(access log, retention runs, errors), each tagged with its process id.
"""

from __future__ import annotations

import logging.config
from typing import Any

__all__ = ["LOG_FORMAT", "configure", "logging_config"]

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: everything to stderr at ``level``."""
    level = level.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"unknown log level {level.lower()!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # uvicorn's own loggers carry no handlers of their own here: they propagate to
        # the root handler, so nothing is printed twice or in another format.
        "loggers": {
            name: {"level": level, "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure(level: str) -> dict[str, Any]:
    """Configure this process and return the document for uvicorn to repeat in workers."""
    document = logging_config(level)
    logging.config.dictConfig(document)
    return document
