"""uvicorn's h11 protocol, answering the requests it refuses in the vendor's envelope.

uvicorn answers a request it cannot parse (a malformed line or header, a head past h11's size
limit) with its own plain-text 400 before any app sees it. Every error of the emulated server
leaves in the vendor's envelope, so this protocol renders that 400 as `MalformedRequest`.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from analytics_mock.api.errors import COMMON_RAW_HEADERS, envelope
from analytics_mock.errors import MalformedRequest


def request_target(start: bytes) -> str:
    """The path of a request line at the start of `start`, or "" when there is none."""
    line = start.split(b"\r\n", 1)[0].split(b" ")
    if len(line) == 3 and line[1].startswith(b"/"):
        return line[1].split(b"?", 1)[0].decode("latin-1")
    return ""


class VendorH11Protocol(H11Protocol):
    """H11Protocol whose 400 for an unparseable request is the vendor's envelope."""

    _request_start = b""

    def data_received(self, data: bytes) -> None:
        """Remember where a new request starts, for the errorSource of a refusal."""
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._request_start = data[:4096]
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """Answer in the envelope with the vendor's headers, then close (as uvicorn does)."""
        body = envelope(request_target(self._request_start), MalformedRequest())
        headers = [
            *COMMON_RAW_HEADERS,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        event = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()
