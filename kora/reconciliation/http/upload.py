"""Reading an uploaded report: the raw request body, or the `file` part of a multipart form,
never more than the configured number of bytes held in memory (a larger body is refused while
it streams in, before anything is parsed or stored)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from kora.reconciliation.http.problems import ReconProblem

# Room for the multipart boundaries and part headers around the file.
MULTIPART_OVERHEAD = 64 * 1024
_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


async def read_upload(request: Request, *, max_bytes: int, filename: str | None) -> tuple[bytes, str]:
    """(the report's bytes, a safe file name). Raises ReconProblem payload_too_large,
    report_missing or unsupported_media_type."""
    content_type = request.headers.get("content-type", "application/octet-stream").lower()
    multipart = content_type.startswith("multipart/form-data")
    limit = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ReconProblem("payload_too_large", f"a report is at most {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ReconProblem("payload_too_large", f"a report is at most {max_bytes} bytes")
    if multipart:
        data, part_name = await _file_part(request, bytes(body))
        filename = filename or part_name
    elif content_type.startswith(("application/x-www-form-urlencoded",)):
        raise ReconProblem("unsupported_media_type")
    else:
        data = bytes(body)
    if len(data) > max_bytes:
        raise ReconProblem("payload_too_large", f"a report is at most {max_bytes} bytes")
    if not data:
        raise ReconProblem("report_missing", "send the report as the body or as the multipart part `file`")
    return data, safe_filename(filename)


async def _file_part(request: Request, body: bytes) -> tuple[bytes, str | None]:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, replay(), max_files=1, max_fields=5, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException:
        raise ReconProblem("report_missing", "the multipart body is malformed") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ReconProblem("report_missing", "send the report as the multipart part `file`")
        return await part.read(), part.filename
    finally:
        await form.close()


def safe_filename(name: str | None) -> str:
    """The base name, reduced to letters, digits, dot, dash and underscore (at most 120)."""
    if not name:
        return "upload"
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _FILENAME.sub("_", base).strip("._")[:120]
    return cleaned or "upload"
