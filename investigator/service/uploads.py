"""Multipart uploads streamed straight into a staging folder of the service's own.

Starlette's form parser spools large files to the system's temporary directory; request
data must not reach any host path outside the service's run directories, so uploads
are parsed here instead, with python-multipart's streaming parser: each file part is
written as it arrives to ``<folder>/<generated name>`` (the client's file name is kept
only as a hint to its type — its suffix, when it is a plain one), text fields are kept
in memory up to a small limit, and unknown parts, repeated parts and too many headers
are refused with a message naming the part.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from investigator.service.errors import RequestRejected

FIELD_CAP = 64 * 1024
MAX_PARTS = 32
SUFFIX = re.compile(r"^(\.[a-z0-9]{1,8}){1,2}$")


@dataclass
class UploadedFile:
    """A file part: where it was written, its suffix (from the client's name, checked),
    size and SHA-256."""

    path: Path
    suffix: str
    size: int
    sha256: str


@dataclass
class Upload:
    """What a multipart request held."""

    files: dict[str, UploadedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A digest of the parts' names and contents (not of the boundary, which changes
        with every retry of the same request)."""
        h = hashlib.sha256(b"multipart\0")
        for name in sorted(self.files):
            f = self.files[name]
            h.update(f"file\0{name}\0{f.suffix}\0{f.sha256}\0".encode())
        for name in sorted(self.fields):
            h.update(f"field\0{name}\0".encode() + self.fields[name].encode() + b"\0")
        return h.hexdigest()


def safe_suffix(filename: str | None) -> str:
    """The suffix of a client's file name (``.yaml``, ``.tar.gz``), lower-cased, or ''
    when it has none or an unusual one. Never a path: only the last name's suffixes."""
    if not filename:
        return ""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    suffixes = "".join(Path(name).suffixes[-2:])
    if SUFFIX.match(suffixes):
        return suffixes
    last = Path(name).suffix
    return last if SUFFIX.match(last) else ""


class _Receiver:
    def __init__(self, folder: Path, file_parts: dict[str, str], text_parts: set[str]) -> None:
        self.folder = folder
        self.file_parts = file_parts  # part name -> stem of the file it is written to
        self.text_parts = text_parts
        self.upload = Upload()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._handle: IO[bytes] | None = None
        self._digest: hashlib._Hash | None = None
        self._size = 0
        self._text: bytearray | None = None
        self._suffix = ""
        self._parts = 0
        self.error: RequestRejected | None = None

    # python-multipart callbacks -------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers = {}
        self._parts += 1
        if self._parts > MAX_PARTS:
            self._fail(f"a request may hold at most {MAX_PARTS} parts")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        if self.error is not None:
            return
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            self._fail("every part needs a `Content-Disposition: form-data; name=...` header")
            return
        name = options[b"name"].decode("utf-8", "replace")
        self._name = name
        if name in self.upload.files or name in self.upload.fields:
            self._fail(f"part `{name}` is given twice")
            return
        if name in self.file_parts:
            filename = options.get(b"filename")
            self._suffix = safe_suffix(filename.decode("utf-8", "replace") if filename else None)
            path = self.folder / f"{self.file_parts[name]}{self._suffix}"
            self._handle = path.open("xb")
            self._digest = hashlib.sha256()
            self._size = 0
        elif name in self.text_parts:
            self._text = bytearray()
        else:
            known = ", ".join([*self.file_parts, *sorted(self.text_parts)])
            self._fail(f"unknown part `{name}`; the parts are: {known}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self._handle is not None and self._digest is not None:
            self._handle.write(chunk)
            self._digest.update(chunk)
            self._size += len(chunk)
        elif self._text is not None:
            self._text += chunk
            if len(self._text) > FIELD_CAP:
                self._fail(f"field `{self._name}` is longer than {FIELD_CAP} bytes")

    def on_part_end(self) -> None:
        if self.error is not None or self._name is None:
            return
        if self._handle is not None and self._digest is not None:
            self._handle.close()
            self.upload.files[self._name] = UploadedFile(
                path=Path(self._handle.name), suffix=self._suffix, size=self._size, sha256=self._digest.hexdigest()
            )
            self._handle = None
        elif self._text is not None:
            try:
                self.upload.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(f"field `{self._name}` is not UTF-8 text")
            self._text = None
        self._name = None

    # -----------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = RequestRejected(422, f"multipart body: {message}")
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


async def receive_multipart(
    content_type: str,
    chunks: AsyncIterator[bytes],
    folder: Path,
    *,
    file_parts: dict[str, str],
    text_parts: set[str],
) -> Upload:
    """Parse a ``multipart/form-data`` body from `chunks`, writing the file parts named
    in `file_parts` (part name -> file stem) into `folder`, and keeping the text parts
    in `text_parts`. Raises `RequestRejected` (422) on anything else."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestRejected(422, "multipart body: the Content-Type header has no boundary")
    receiver = _Receiver(folder, file_parts, text_parts)
    callbacks = {
        "on_part_begin": receiver.on_part_begin,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
    }
    parser = MultipartParser(boundary, callbacks, max_header_count=8, max_header_size=4224)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            if receiver.error is not None:
                continue  # drain the body; the request is refused when it ends
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart raises its own errors for malformed bodies
                receiver._fail(f"malformed ({type(exc).__name__}: {exc})")
        if receiver.error is None:
            try:
                parser.finalize()
            except Exception as exc:
                receiver._fail(f"malformed ({type(exc).__name__}: {exc})")
    finally:
        receiver.close()
    if receiver.error is not None:
        raise receiver.error
    if receiver._name is not None:
        raise RequestRejected(422, "multipart body: it ends inside a part")
    return receiver.upload
