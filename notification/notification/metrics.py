"""Prometheus instruments for notification's emails, on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class Metrics:
    emails_sent: Counter
    emails_failed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        metrics = cls(
            emails_sent=Counter(
                "notification_emails_sent_total",
                "Emails the SMTP server accepted, by the job outcome they announce (done or failed).", ["kind"],
                registry=registry),
            emails_failed=Counter(
                "notification_emails_failed_total",
                "Send attempts that failed: reason=unavailable (retried) or rejected (never deliverable).",
                ["reason"], registry=registry),
        )
        # Every series exported from the start at 0, so rate() and alerts see them before the first event.
        for kind in ("done", "failed"):
            metrics.emails_sent.labels(kind)
        for reason in ("unavailable", "rejected"):
            metrics.emails_failed.labels(reason)
        return metrics
