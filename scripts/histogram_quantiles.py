"""Print count, mean and p50/p95/p99 of one Prometheus histogram read from a /metrics page on
stdin (summed over its label sets, or only those matching LABEL=VALUE arguments), the way
histogram_quantile() estimates them: linear interpolation inside the bucket.
Usage: curl -s URL/metrics | python scripts/histogram_quantiles.py NAME [LABEL=VALUE ...]"""

from __future__ import annotations

import sys

from prometheus_client.parser import text_string_to_metric_families


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 0.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def main(name: str, wanted: dict[str, str]) -> None:
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in text_string_to_metric_families(sys.stdin.read()):
        if family.name != name:
            continue
        for sample in family.samples:
            if any(sample.labels.get(label) != value for label, value in wanted.items()):
                continue
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{name}_sum":
                total += sample.value
            elif sample.name == f"{name}_count":
                count += sample.value
    if not count:
        print(f"{name} {wanted or ''}: no observations")
        return
    ordered = sorted(buckets.items())
    p50, p95, p99 = (quantile(q, ordered) * 1000 for q in (0.5, 0.95, 0.99))
    print(
        f"{name} {wanted or ''}: {int(count)} observations, mean {total / count * 1000:.3f} ms, "
        f"p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms (bucket-interpolated)"
    )


if __name__ == "__main__":
    main(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:]))
