"""Prometheus instruments for notification's emails, on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from mp3core.metrics import counter


@dataclass(frozen=True)
class Metrics:
    emails_sent: Counter
    emails_failed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            emails_sent=counter(registry, "notification_emails_sent_total",
                                "Emails the SMTP server accepted, by the job outcome they announce.",
                                "kind", ("done", "failed")),
            emails_failed=counter(registry, "notification_emails_failed_total",
                                  "Send attempts that failed: unavailable (retried) or rejected (never deliverable).",
                                  "reason", ("unavailable", "rejected")),
        )
