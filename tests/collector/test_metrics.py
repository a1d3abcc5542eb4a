"""/metrics: the collector's operational figures, summed over workers, never visitor data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headcount_collector.metrics import NoMetrics, PrometheusMetrics
from tests._servers import free_port, start_collector
from tests.collector.conftest import auth, batch_body, pageview

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "hcm_metrics-token-for-tests-0001"


def figure(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} missing from:\n{text}"
    return float(match.group(1))


@pytest.mark.slow
def test_metrics_sum_every_worker_and_hold_no_visitor_data(
    tmp_path: Path, site_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADCOUNT_METRICS_TOKEN", METRICS_TOKEN)
    metrics_port = free_port()
    server = start_collector(
        tmp_path,
        site_file,
        workers=2,
        extra=("--metrics-port", str(metrics_port), "--retention-interval", "0.3"),
    )
    try:
        with httpx.Client(base_url=server.url, headers={"Connection": "close"}) as client:
            for _ in range(6):  # new connections: both workers take some
                body = batch_body([pageview(route="/canary-route-xyz", n=3), pageview(n=1)])
                assert client.post("/v1/ingest", content=body, headers=auth()).status_code == 202
            again = batch_body([pageview()], batch_id="ab" * 16)
            assert client.post("/v1/ingest", content=again, headers=auth()).status_code == 202
            assert client.post("/v1/ingest", content=again, headers=auth()).status_code == 200
            wrong = {**auth("hcw_wrong"), "Content-Type": "application/json"}
            assert client.post("/v1/ingest", content=again, headers=wrong).status_code == 401
            bad_type = {**auth(), "Content-Type": "text/plain"}
            assert client.post("/v1/ingest", content=again, headers=bad_type).status_code == 415
            invalid = batch_body([pageview(route="/u/4242424242424242")])
            assert client.post("/v1/ingest", content=invalid, headers=auth()).status_code == 422
            # On the main port only for the metrics token.
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", headers=auth("hcw_wrong")).status_code == 401
            main = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert main.status_code == 200
        time.sleep(0.8)
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    finally:
        server.stop()
    assert figure(text, "headcount_ingest_batches_accepted_total") == 7
    assert figure(text, "headcount_ingest_records_accepted_total") == 13
    assert figure(text, "headcount_ingest_batches_duplicate_total") == 1
    for reason in ("unauthorized", "unsupported_media_type", "invalid"):
        assert figure(text, "headcount_ingest_rejected_total", f'{{reason="{reason}"}}') == 1
    assert figure(text, "headcount_commit_seconds_count") >= 1
    # Every batch that reached storage, the duplicate too (it is recognised there).
    assert figure(text, "headcount_commit_group_batches_sum") == 8
    assert figure(text, "headcount_retention_runs_total", '{outcome="ok"}') >= 2
    # Operational figures only: no site, route, referrer or token in any label.
    for leak in ("canary-route", "blog", "shop", "4242424242", "hcw_", METRICS_TOKEN):
        assert leak not in text
        assert leak not in main.text
    assert "headcount_ingest_rejected_total" in main.text


def test_keys_spilled_by_caps_are_counted_for_the_stores() -> None:
    metrics = PrometheusMetrics()
    metrics.keys_spilled("pageview", 3)
    metrics.keys_spilled("pageview", 2)
    metrics.keys_spilled("event", 1)
    text = metrics.render()[0].decode()
    assert figure(text, "headcount_keys_spilled_total", '{table="pageview"}') == 5
    assert figure(text, "headcount_keys_spilled_total", '{table="event"}') == 1
    NoMetrics().keys_spilled("pageview", 3)  # the same call, switched off


def test_metrics_without_prometheus_client_give_an_install_hint(
    tmp_path: Path, site_file: Path
) -> None:
    fake = tmp_path / "no-prometheus" / "prometheus_client"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'prometheus_client'\", "
        "name='prometheus_client')\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlib.util\n"
            "from headcount_collector.metrics import PrometheusMetrics\n"
            "try:\n    PrometheusMetrics()\nexcept ValueError as e:\n    print(e)\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"},
    )
    assert "pip install 'headcount[metrics]'" in done.stdout, done.stderr
