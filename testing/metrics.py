"""Scraping a Prometheus endpoint in tests: the text format, parsed by prometheus-client."""

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from testing.polling import wait_until


def metrics_scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def metric_value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def metric_series(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        sample
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


class Scraper:
    """A worker's metrics endpoint (`METRICS_PORT`)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def wait_up(self, timeout: float = 30.0) -> list[Sample]:
        def answered() -> list[Sample] | None:
            try:
                return metrics_scrape(self.url)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None  # not up yet, or still starting

        return wait_until(answered, timeout=timeout, message=f"metrics at {self.url}")

    def samples(self) -> list[Sample]:
        return metrics_scrape(self.url)

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.samples(), name, **labels)

    def wait_for(self, name: str, expected: float, timeout: float = 30.0, **labels: str) -> None:
        """Poll until the metric (summed over matching series) equals `expected`."""
        seen: list[float] = []

        def reached() -> bool:
            seen.append(self.value(name, **labels))
            return seen[-1] == expected

        try:
            wait_until(reached, timeout=timeout)
        except AssertionError:
            raise AssertionError(
                f"{name}{labels} is {seen[-1] if seen else None}, expected {expected}"
            ) from None
