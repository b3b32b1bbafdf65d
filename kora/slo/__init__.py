"""SLOs as code: Sloth `prometheus/v1` specs (``slo/*.yml``) turned into Prometheus recording
and multi-window multi-burn-rate alert rules (``alerts/slo/*.rules.yml``) by
``kora slo generate``. A build tool: it knows no business module and no framework."""

from kora.slo.generate import Drift, drift, load_specs, planned_files, render, write
from kora.slo.rules import PAGE_CONDITIONS, SLI_WINDOWS, TICKET_CONDITIONS, service_rule_groups, sli_error_ratio
from kora.slo.spec import ServiceSlos, Slo, SpecError, parse_spec

__all__ = [
    "PAGE_CONDITIONS",
    "SLI_WINDOWS",
    "TICKET_CONDITIONS",
    "Drift",
    "ServiceSlos",
    "Slo",
    "SpecError",
    "drift",
    "load_specs",
    "parse_spec",
    "planned_files",
    "render",
    "service_rule_groups",
    "sli_error_ratio",
    "write",
]
