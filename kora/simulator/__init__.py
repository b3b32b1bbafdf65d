"""A provider simulator: MTN-MoMo-like, Wave-like and card-acquirer APIs over HTTP, with
injectable failures, a ground-truth ledger and daily settlement reports. Its own small
service: it knows nothing of Kora's business modules."""

from kora.simulator.app import create_simulator_app, simulator_state
from kora.simulator.behaviour import MAGIC_CODES, Behaviour, Decline, Scenario, magic_behaviour, select_behaviour
from kora.simulator.config import (
    ApiStyle,
    BehaviourMix,
    FeeRule,
    LatencyConfig,
    LatencyKind,
    OutageMode,
    ProviderConfig,
    SimulatorConfig,
)
from kora.simulator.engine import SimulatorState
from kora.simulator.signing import (
    CARD_SIGNATURE_HEADER,
    WAVE_SIGNATURE_HEADER,
    compute_signature,
    signature_header,
    verify_signature,
)

__all__ = [
    "CARD_SIGNATURE_HEADER",
    "MAGIC_CODES",
    "WAVE_SIGNATURE_HEADER",
    "ApiStyle",
    "Behaviour",
    "BehaviourMix",
    "Decline",
    "FeeRule",
    "LatencyConfig",
    "LatencyKind",
    "OutageMode",
    "ProviderConfig",
    "Scenario",
    "SimulatorConfig",
    "SimulatorState",
    "compute_signature",
    "create_simulator_app",
    "magic_behaviour",
    "select_behaviour",
    "signature_header",
    "simulator_state",
    "verify_signature",
]
