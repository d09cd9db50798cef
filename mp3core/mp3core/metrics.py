"""The one metrics pattern: each service's instruments in a frozen dataclass built by `create(registry)`.

The composition root makes the registry (the process's for a consumer, one per app for a Flask service) and
serves it on /metrics; logic and adapters get the instruments passed in. This module holds the helper every
`create` uses for labelled counters.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter


def counter(registry: CollectorRegistry, name: str, documentation: str, label: str | None = None,
            values: Iterable[str] = ()) -> Counter:
    """A counter; with a label, every one of `values` is exported at 0 from the start, so rate() and alerts
    see each series before its first event."""
    made = Counter(name, documentation, [label] if label else [], registry=registry)
    for value in values:
        made.labels(value)
    return made
