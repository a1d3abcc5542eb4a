"""gunicorn settings for the Flask example: send what is counted when a worker stops."""

from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    # worker.wsgi is the Flask app this worker served (loaded here or, with --preload,
    # inherited from the arbiter); the extension keeps its Tracker in app.extensions.
    tracker = getattr(worker.wsgi, "extensions", {}).get("headcount")
    if tracker is not None:
        tracker.shutdown(timeout=2.0)
