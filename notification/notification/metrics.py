"""Prometheus metrics for notification's emails (the consumer loop defines its own)."""

from prometheus_client import Counter

EMAILS_SENT = Counter("notification_emails_sent_total",
                      "Emails the SMTP server accepted, by the job outcome they announce (done or failed).", ["kind"])
EMAILS_FAILED = Counter("notification_emails_failed_total",
                        "Send attempts that failed: reason=unavailable (retried) or rejected (never deliverable).",
                        ["reason"])

# Export every series from the start at 0, so rate() and alerts see them before the first event.
for _kind in ("done", "failed"):
    EMAILS_SENT.labels(_kind)
for _reason in ("unavailable", "rejected"):
    EMAILS_FAILED.labels(_reason)
