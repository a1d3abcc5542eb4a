"""A forked worker against the real collector: the child's counts arrive, the parent's once."""

from __future__ import annotations

import os

import httpx
import pytest

from headcount import RequestInfo, Tracker
from tests._servers import CollectorProcess
from tests.conftest import SHOP_READ_TOKEN, SHOP_WRITE_TOKEN

pytestmark = pytest.mark.slow

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def requests_by_route(server: CollectorProcess) -> dict[str, int]:
    response = httpx.get(
        f"{server.url}/v1/stats",
        params={"metric": "requests", "interval": "total", "by": "route"},
        headers={"Authorization": f"Bearer {SHOP_READ_TOKEN}"},
    )
    assert response.status_code == 200
    return {row["route"]: row["count"] for row in response.json()["rows"]}


def test_forked_child_and_parent_each_deliver_their_own_counts_once(
    collector_server: CollectorProcess,
) -> None:
    tracker = Tracker(collector_server.url, SHOP_WRITE_TOKEN, flush_interval=86400, visits=False)
    for _ in range(5):
        tracker.record_request(RequestInfo("GET", "/parent", 200, 0.01, user_agent=BROWSER))
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for _ in range(3):
                tracker.record_request(RequestInfo("GET", "/child", 200, 0.01, user_agent=BROWSER))
            code = 0 if tracker.flush(10) and tracker.stats().dropped == 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert requests_by_route(collector_server) == {"/child": 3}
    assert tracker.flush(10) is True
    tracker.shutdown(2)
    # The site has k = 1, so these small counts are released exactly.
    assert requests_by_route(collector_server) == {"/child": 3, "/parent": 5}
