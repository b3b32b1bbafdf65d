"""Risk policies shipped with Kora. `default.yaml` is the reference policy (XOF)."""

from pathlib import Path

DEFAULT_POLICY_PATH = Path(__file__).with_name("default.yaml")
