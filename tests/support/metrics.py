"""Metrics as the tests read them: registry samples in-process, /metrics pages over HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from support.servers import LOOPBACK

Page = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A registry sample, 0 when it was never observed."""
    got = registry.get_sample_value(name, labels)
    return float(got) if got is not None else 0.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, keyed by (sample name, labels)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(page: Page, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels, None when the page has none."""
    return page.get((name, frozenset(labels.items())))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for (sample_name, sample_labels), got in samples(text).items():
        if sample_name == name and labels.items() <= dict(sample_labels).items():
            total += got
    return total
