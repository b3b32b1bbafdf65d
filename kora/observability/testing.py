"""Test helpers for code that logs: see exactly what a production sink would write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger

from kora.observability.logging import LineSink, install_log_scrubbing, render_json, unconfigure_logging

__all__ = ["capture_logs", "unconfigure_logging"]


@contextmanager
def capture_logs(level: str = "TRACE") -> Iterator[list[str]]:
    """Collect every log line emitted during the block, rendered as the production JSON
    sink renders it (scrubbed, with correlation and trace ids). Yields the list, which fills
    as records arrive; lines carry no trailing newline.

    Works with or without :func:`configure_logging` having run; records from the standard
    library are included once ``configure_logging`` has bridged it.
    """
    lines: list[str] = []
    install_log_scrubbing()
    handler_id = logger.add(
        LineSink(lambda line: lines.append(line.rstrip("\n")), render_json),
        level=level,
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=False,
    )
    try:
        yield lines
    finally:
        logger.remove(handler_id)
