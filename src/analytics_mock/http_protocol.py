"""uvicorn's httptools protocol, answering the requests it refuses in the vendor's envelope.

uvicorn answers a request it cannot parse (a malformed line or header) with its own plain-text
400 before any app sees it. Every error of the emulated server leaves in the vendor's envelope,
so this protocol renders that 400 as `MalformedRequest`. httptools itself buffers a head of any
size; this protocol refuses one still arriving past `MAX_HEAD_SIZE` with `head_too_large()`,
as `HeadLimitMiddleware` refuses a whole head past the same size.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from analytics_mock.api.errors import COMMON_RAW_HEADERS, envelope
from analytics_mock.api.middleware import MAX_HEAD_SIZE, head_too_large
from analytics_mock.errors import DomainError, MalformedRequest


def request_target(start: bytes) -> str:
    """The path of a request line at the start of `start`, or "" when there is none."""
    line = start.split(b"\r\n", 1)[0].split(b" ")
    if len(line) == 3 and line[1].startswith(b"/"):
        return line[1].split(b"?", 1)[0].decode("latin-1")
    return ""


class VendorHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose refusals are the vendor's envelope, with a limit on the head."""

    _between_messages = True  # no part of a request is buffered
    _head_open = False  # a request has begun and its headers have not ended
    _head_bytes = 0
    _heads_begun = 0  # in the chunk being parsed
    _request_start = b""
    _too_large = False

    def data_received(self, data: bytes) -> None:
        """Parse `data`; refuse a head that is still open past `MAX_HEAD_SIZE` bytes."""
        began_between = self._between_messages
        if began_between:
            self._request_start = data[:4096]
        self._heads_begun = 0
        super().data_received(data)
        if not self._head_open or self.transport.is_closing():
            return
        # A head that began after the end of another message in this chunk starts at an offset
        # the parser does not tell: its bytes are counted from the next chunk on.
        if self._heads_begun == 0 or (self._heads_begun == 1 and began_between):
            self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_SIZE:
            self.logger.warning("Request head larger than %d bytes refused.", MAX_HEAD_SIZE)
            self._refuse(head_too_large())

    def on_url(self, url: bytes) -> None:
        """Collect the target; stop parsing one past the limit, which httptools cannot parse."""
        super().on_url(url)
        if len(self.url) > MAX_HEAD_SIZE:
            # httptools parses a target only up to 64 KiB; the parser turns this into a 400.
            self._too_large = True
            raise ValueError("request target too large")

    def on_message_begin(self) -> None:
        """Start counting the bytes of a new head."""
        super().on_message_begin()
        self._between_messages = False
        self._head_open = True
        self._head_bytes = 0
        self._heads_begun += 1

    def on_headers_complete(self) -> None:
        """The head has ended: stop counting."""
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The next bytes start a new request."""
        super().on_message_complete()
        self._between_messages = True

    def send_400_response(self, msg: str) -> None:
        """Answer in the envelope with the vendor's headers, then close (as uvicorn does)."""
        self._refuse(head_too_large() if self._too_large else MalformedRequest())

    def _refuse(self, error: DomainError) -> None:
        body = envelope(request_target(self._request_start), error)
        head = [
            STATUS_LINE[error.status],
            *(name + b": " + value + b"\r\n" for name, value in COMMON_RAW_HEADERS),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
