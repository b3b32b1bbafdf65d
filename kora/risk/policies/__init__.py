"""Risk policies shipped with Kora. `default.yaml` is the reference policy (XOF); `bench.yaml`
lets a load test's synthetic traffic through while every window is still read (never in
production)."""

from pathlib import Path

DEFAULT_POLICY_PATH = Path(__file__).with_name("default.yaml")
BENCH_POLICY_PATH = Path(__file__).with_name("bench.yaml")
