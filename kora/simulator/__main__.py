"""``python -m kora.simulator [--host H] [--port P] [--config FILE.json] [--zero-latency]``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kora.simulator.config import SimulatorConfig


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from kora.observability import TelemetrySettings, configure_telemetry
    from kora.simulator.app import create_simulator_app

    parser = argparse.ArgumentParser(prog="python -m kora.simulator", description="Kora provider simulator")
    parser.add_argument("--host", default=os.environ.get("KORA_SIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("KORA_SIM_PORT", "8090")))
    parser.add_argument("--config", type=Path, default=os.environ.get("KORA_SIM_CONFIG"), help="JSON SimulatorConfig")
    parser.add_argument("--zero-latency", action="store_true", help="test settings: no latency, short holds")
    parser.add_argument("--log-level", default=os.environ.get("KORA_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if args.config is not None:
        config = SimulatorConfig.model_validate_json(Path(args.config).read_text())
    elif args.zero_latency:
        config = SimulatorConfig.for_tests()
    else:
        config = SimulatorConfig()
    configure_telemetry(TelemetrySettings.from_env("kora-simulator", log_level=args.log_level))
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
