"""Structured logging with loguru: one JSON object per line, correlation and trace ids on
every record, PII and secrets scrubbed before any sink sees the record, and the standard
library's loggers (uvicorn, SQLAlchemy, httpx, warnings) routed into the same pipeline."""

from __future__ import annotations

import contextlib
import inspect
import json as jsonlib
import logging
import sys
import traceback
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from kora.observability.correlation import get_correlation_id
from kora.observability.scrubbing import scrub, scrub_value
from kora.observability.tracing import current_trace_ids

if TYPE_CHECKING:
    from loguru import Message, Record, RecordException

_ID_FIELDS = ("correlation_id", "trace_id", "span_id")
LOGGER_NAME_FIELD = "logger_name"  # extra key set by the stdlib bridge: the stdlib logger's name
_CORE_FIELDS = frozenset({"ts", "level", "message", "logger", "function", "line", "service", "exception"})

# Standard-library loggers whose own handlers are dropped so they flow into loguru.
_BRIDGED_LOGGERS = ("uvicorn", "uvicorn.error", "fastapi", "sqlalchemy", "alembic", "asyncio", "httpx")
# Chatty libraries kept at WARNING: httpx/httpcore log full URLs (query strings) at INFO.
_QUIET_LOGGERS = ("sqlalchemy", "httpx", "httpcore", "asyncio", "aiosqlite", "alembic.runtime.plugins")

_handler_id: int | None = None


def configure_logging(
    *,
    level: str,
    json: bool,
    sink: TextIO | Callable[[str], object] | None = None,
    service: str | None = None,
) -> None:
    """Route every log record of the process to ``sink`` (standard error when ``None``).

    ``json=True`` writes one JSON object per line with ``ts`` (UTC), ``level``, ``message``,
    ``logger``, ``function``, ``line``, ``correlation_id``, ``trace_id``, ``span_id``, the
    record's bound extra fields, ``exception`` (scrubbed traceback text) and ``service``
    when given; ``json=False`` writes a human-readable line for development.

    Safe to call again (tests do): the previous Kora sink is replaced, other sinks (such as
    :func:`kora.observability.testing.capture_logs`) are kept. Tracebacks never include
    local variable values (loguru's ``diagnose`` is off): they would leak PII.
    """
    global _handler_id
    level_no = logger.level(level.upper()).no  # ValueError for an unknown level name
    install_log_scrubbing()
    for handler_id in (0, _handler_id):  # 0 is loguru's default stderr sink
        if handler_id is not None:
            with contextlib.suppress(ValueError):  # already removed
                logger.remove(handler_id)
    render = (lambda record: render_json(record, service)) if json else render_text
    _handler_id = logger.add(
        LineSink(sink if sink is not None else sys.stderr, render),
        level=level_no,
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
    )
    _bridge_standard_logging(level_no)


def unconfigure_logging() -> None:
    """Undo :func:`configure_logging`: remove Kora's sink, detach the standard-library bridge
    and restore loguru's default stderr sink. For test teardown."""
    global _handler_id
    if _handler_id is not None:
        with contextlib.suppress(ValueError):
            logger.remove(_handler_id)
        _handler_id = None
        logger.add(sys.stderr)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _InterceptHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)


def install_log_scrubbing() -> None:
    """Install the record patcher (ids + scrubbing) on loguru's core. Idempotent."""
    logger.configure(patcher=_patch_record)


def _patch_record(record: Record) -> None:
    """Runs once per record, before any sink: adds ids, scrubs the message and extras."""
    extra = record["extra"]
    for key, value in extra.items():
        extra[key] = scrub_value(str(key), value)
    correlation_id = get_correlation_id()
    if correlation_id is not None:
        extra["correlation_id"] = scrub(correlation_id)  # caller-chosen: could be a phone number
    else:
        extra.setdefault("correlation_id", None)
    trace_id, span_id = current_trace_ids()
    if trace_id is not None:
        extra["trace_id"] = trace_id
        extra["span_id"] = span_id
    else:
        extra.setdefault("trace_id", None)
        extra.setdefault("span_id", None)
    record["message"] = scrub(record["message"])


class LineSink:
    """A loguru sink that renders each record itself (so every sink gets the same scrubbed
    JSON) and writes it as one line to a text stream or a ``str`` callback."""

    def __init__(self, target: TextIO | Callable[[str], object], render: Callable[[Record], str]) -> None:
        self._write: Callable[[str], object] = target.write if hasattr(target, "write") else target
        self._flush: Callable[[], object] | None = getattr(target, "flush", None)
        self._render = render

    def __call__(self, message: Message) -> None:
        self._write(self._render(message.record) + "\n")
        if self._flush is not None:
            self._flush()


def render_json(record: Record, service: str | None = None) -> str:
    """One JSON object (no newline) for a patched record."""
    extra = record["extra"]
    payload: dict[str, Any] = {
        "ts": _utc_timestamp(record),
        "level": record["level"].name,
        "message": record["message"],
        "logger": extra.get(LOGGER_NAME_FIELD) or record["name"],
        "function": record["function"],
        "line": record["line"],
        "correlation_id": extra.get("correlation_id"),
        "trace_id": extra.get("trace_id"),
        "span_id": extra.get("span_id"),
    }
    if service is not None:
        payload["service"] = service
    for key, value in extra.items():
        if key in _ID_FIELDS or key == LOGGER_NAME_FIELD:
            continue
        payload[f"extra_{key}" if key in _CORE_FIELDS else key] = value
    if record["exception"] is not None:
        payload["exception"] = format_exception(record["exception"])
    return jsonlib.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":"))


def render_text(record: Record) -> str:
    """A human-readable line (development) for a patched record."""
    extra = record["extra"]
    fields = " ".join(
        f"{key}={value}" for key, value in extra.items() if key not in _ID_FIELDS and key != LOGGER_NAME_FIELD
    )
    line = (
        f"{_utc_timestamp(record)} | {record['level'].name:<8} | {extra.get('correlation_id') or '-'} | "
        f"{extra.get(LOGGER_NAME_FIELD) or record['name']}:{record['function']}:{record['line']} - "
        f"{record['message']}"
    )
    if fields:
        line = f"{line} | {fields}"
    if record["exception"] is not None:
        line = f"{line}\n{format_exception(record['exception'])}"
    return line


def _utc_timestamp(record: Record) -> str:
    return record["time"].astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_exception(exception: RecordException) -> str:
    """The exception's traceback as scrubbed text (no local variable values)."""
    if exception.type is None:
        return ""
    lines = traceback.format_exception(exception.type, exception.value, exception.traceback)
    return scrub("".join(lines).rstrip())


class _InterceptHandler(logging.Handler):
    """Forwards standard-library log records to loguru (the recipe from loguru's docs)."""

    def emit(self, record: logging.LogRecord) -> None:
        level: str | int
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.bind(**{LOGGER_NAME_FIELD: record.name}).opt(depth=depth, exception=record.exc_info).log(
            level, record.getMessage()
        )


def _bridge_standard_logging(level_no: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _InterceptHandler):
            root.removeHandler(handler)
    root.addHandler(_InterceptHandler())
    root.setLevel(level_no)
    for name in _BRIDGED_LOGGERS:
        bridged = logging.getLogger(name)
        bridged.handlers.clear()
        bridged.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level_no, logging.WARNING))
    # uvicorn's access line carries the raw path and query string; the observability
    # middleware writes a safe one (route template, status, duration) instead.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = [logging.NullHandler()]
    access.propagate = False
    logging.captureWarnings(True)
