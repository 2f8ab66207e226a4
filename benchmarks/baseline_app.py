"""The floor for `benchmarks/run.py`: raw ASGI, no framework, no database.

It does the least any server of this API must do: read the whole body, parse it as JSON on a
PUT, compare the Authorization header with Basic system:manager, and answer a small JSON body.
With `--fastapi` it does the same through FastAPI instead: a GET list route and a PUT route
whose body is a Pydantic model and whose Authorization header is a declared parameter. That is
the issue's "FastAPI route with nothing behind it": the share of the budget the framework that
analytics-mock is built on takes by itself, measured in the same run.

Either is served the way `analytics-mock serve` serves (`analytics_mock.serving`): one process, a
socket bound by the caller with SO_REUSEADDR, `uvicorn.Server.serve(sockets=...)`, the same
`uvicorn.Config` options, and logging through one stderr handler at the given level (warning in
the benchmark, which silences uvicorn's per-request access log in both servers).

    python benchmarks/baseline_app.py --port 8000 [--log-level warning] [--socket-proto N]
                                      [--nodelay] [--fastapi]

`--socket-proto` and `--nodelay` copy how `analytics_mock.serving._bind` makes its listening
socket (run.py reads them from it): asyncio sets TCP_NODELAY on an accepted connection only when
the socket's proto is IPPROTO_TCP (6), and a socket made with proto 0 keeps Nagle's algorithm.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import socket
import sys
from typing import Any

import uvicorn

EXPECTED_AUTH = b"Basic " + base64.b64encode(b"system:manager")
BODY = json.dumps(
    {"instanceID": "mailServerSetting#0", "hostname": "bench.example.com", "portNumber": 2525}
).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 and a small JSON body; 401 without Basic system:manager; 400 for a bad JSON PUT."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, payload = 200, BODY
    if dict(scope["headers"]).get(b"authorization") != EXPECTED_AUTH:
        status, payload = 401, b'{"message": "unauthorized"}'
    elif scope["method"] == "PUT":
        try:
            json.loads(body)
        except ValueError:
            status, payload = 400, b'{"message": "bad JSON"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def make_config(asgi_app: Any = app) -> uvicorn.Config:
    """The options `analytics_mock.serving._config` gives uvicorn (for plain HTTP)."""
    return uvicorn.Config(
        asgi_app,
        # analytics-mock serves with httptools always (a subclass that words its 400s like the
        # vendor's).
        http="httptools",
        lifespan="off",
        log_config=None,
        # X-Forwarded-* are believed only from proxies the operator lists; by default none.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def configure_logging(level: str) -> None:
    """As `analytics_mock.logs.configure_logging` (text format): one handler on the root."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def main() -> None:
    """Serve the baseline on 127.0.0.1 until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--socket-proto", type=int, default=0)
    parser.add_argument("--nodelay", action="store_true")
    parser.add_argument("--fastapi", action="store_true", help="serve the FastAPI version")
    args = parser.parse_args()
    configure_logging(args.log_level)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, args.socket_proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", args.port))
    asgi_app: Any = app
    if args.fastapi:
        # Imported only here, so the raw baseline never loads FastAPI.
        import fastapi_app  # noqa: PLC0415 - a sibling module, on the path when run as a script

        asgi_app = fastapi_app.build(EXPECTED_AUTH.decode(), json.loads(BODY))
    config = make_config(asgi_app)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
