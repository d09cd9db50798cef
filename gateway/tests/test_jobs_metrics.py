"""The jobs-by-status gauge: counted at scrape time, cached briefly, absent (not zero) when unknown."""

from __future__ import annotations

import pymongo.errors
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import JOBS_CACHE_SECONDS, JobsByStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_with(collector: JobsByStatus) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return registry


def test_scrape_exports_every_status_counted_now(client, jobs, helpers):
    for n, status in enumerate(["queued", "done", "done", "converting"]):
        jobs.docs[f"{n:032x}"] = {"_id": f"{n:032x}", "owner": helpers.ALICE, "status": status}

    text = client.get("/metrics").get_data(as_text=True)

    assert 'gateway_jobs{status="queued"} 1.0' in text
    assert 'gateway_jobs{status="converting"} 1.0' in text
    assert 'gateway_jobs{status="done"} 2.0' in text
    assert 'gateway_jobs{status="failed"} 0.0' in text  # known statuses never vanish
    assert 'gateway_jobs{status="expired"} 0.0' in text
    # The request metrics are still there next to it.
    assert "gateway_http_requests_total" in text and "gateway_publish_failures_total" in text


def test_building_the_app_does_not_count_jobs(app, jobs):
    assert jobs.count_calls == 0


def test_counts_are_cached_for_the_ttl():
    calls = []
    clock = Clock()
    collector = JobsByStatus(lambda: calls.append(1) or {"done": len(calls)}, clock=clock)
    registry = registry_with(collector)

    assert registry.get_sample_value("gateway_jobs", {"status": "done"}) == 1
    clock.now += JOBS_CACHE_SECONDS - 0.1
    assert registry.get_sample_value("gateway_jobs", {"status": "done"}) == 1
    assert len(calls) == 1
    clock.now += 0.1
    assert registry.get_sample_value("gateway_jobs", {"status": "done"}) == 2
    assert len(calls) == 2


def test_unknown_statuses_are_exported_too():
    registry = registry_with(JobsByStatus(lambda: {"queued": 3, "weird": 1}, clock=Clock()))
    assert registry.get_sample_value("gateway_jobs", {"status": "weird"}) == 1
    assert registry.get_sample_value("gateway_jobs", {"status": "queued"}) == 3


def test_mongodb_down_leaves_the_gauge_empty_and_caches_the_failure(caplog):
    calls = []
    clock = Clock()

    def count():
        calls.append(1)
        raise pymongo.errors.ServerSelectionTimeoutError("down")

    registry = registry_with(JobsByStatus(count, clock=clock))

    text = generate_latest(registry).decode()
    assert "# TYPE gateway_jobs gauge" in text
    assert "gateway_jobs{" not in text  # unknown is not zero
    generate_latest(registry)
    assert len(calls) == 1, "a scrape during an outage must not wait for MongoDB again within the TTL"
    assert "counting jobs for metrics failed" in caplog.text


def test_metrics_endpoint_answers_while_mongodb_is_down(client, jobs):
    jobs.count_error = pymongo.errors.ServerSelectionTimeoutError("down")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "gateway_http_requests_total" in response.get_data(as_text=True)
