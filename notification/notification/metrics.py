"""Prometheus instruments for notification's emails, on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from mp3core.metrics import counter


@dataclass(frozen=True)
class Metrics:
    emails_sent: Counter
    emails_failed: Counter
    emails_deferred: Counter
    emails_given_up: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            emails_sent=counter(registry, "notification_emails_sent_total",
                                "Emails the SMTP server accepted, by the job outcome they announce.",
                                "kind", ("done", "failed")),
            emails_failed=counter(registry, "notification_emails_failed_total",
                                  "Send attempts that failed: unavailable (retried) or rejected (never deliverable).",
                                  "reason", ("unavailable", "rejected")),
            emails_deferred=counter(registry, "notification_emails_deferred_total",
                                    "Messages moved to the back of the queue after SMTP_RETRY_SECONDS of SMTP "
                                    "unavailable."),
            emails_given_up=counter(registry, "notification_emails_given_up_total",
                                    "Emails given up (job marked, message dead-lettered): rejected (can never be "
                                    "delivered) or unavailable (for NOTIFY_GIVE_UP_SECONDS).",
                                    "reason", ("rejected", "unavailable")),
        )
