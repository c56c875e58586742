#!/usr/bin/python3
"""Echo/command WebSocket server around Python's `websockets` (Debian's 10.x,
legacy asyncio API). Run with /usr/bin/python3. Contract: spec/peers/README.md.

Every event is one JSON line on stdout, flushed. Diagnostics go to stderr.
"""
import argparse
import asyncio
import http
import json
import signal
import ssl
import sys

import websockets
from websockets.frames import OP_PING, OP_PONG
from websockets.legacy.server import WebSocketServerProtocol

from py_common import emit, headers_dict, message_event, payload_fields, pattern


def split_parts(text, n):
    """text split into n consecutive parts (by code point; some may be empty)."""
    n = max(1, n)
    q, r = divmod(len(text), n)
    parts, pos = [], 0
    for i in range(n):
        size = q + (1 if i < r else 0)
        parts.append(text[pos:pos + size])
        pos += size
    return parts


class LoggingProtocol(WebSocketServerProtocol):
    """Logs received pings and pongs (the library answers pings itself and
    does not expose them, so hook the documented frame reader) and failed
    opening handshakes."""

    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        if frame.opcode == OP_PING:
            emit(event="ping", **payload_fields(frame.data))
        elif frame.opcode == OP_PONG:
            emit(event="pong", **payload_fields(frame.data))
        return frame

    async def handshake(self, *args, **kwargs):
        try:
            return await super().handshake(*args, **kwargs)
        except websockets.exceptions.AbortHandshake:
            raise  # our own --decline
        except Exception as exc:
            emit(event="error", message=f"handshake failed: {exc}")
            raise


async def run_command(ws, text):
    _, _, rest = text.partition(":")
    verb, _, arg = rest.partition(":")
    if verb == "close":
        code, _, reason = arg.partition(":")
        await ws.close(int(code), reason)
    elif verb == "ping":
        waiter = await ws.ping(arg.encode("utf-8"))
        # The pong is logged by read_frame; retrieve the waiter's outcome so a
        # connection lost before the pong does not print a traceback.
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
    elif verb == "fragments":
        n, _, body = arg.partition(":")
        # websockets sends each element of an iterable as one frame, then an
        # empty FIN continuation frame.
        await ws.send(split_parts(body, int(n)))
    elif verb == "big":
        await ws.send(pattern(int(arg)))
    elif verb == "headers":
        await ws.send(json.dumps(headers_dict(ws.request_headers), separators=(",", ":")))
    else:
        raise ValueError(f"unknown command {text!r}")


async def handler(ws):
    ext = ws.response_headers.get_all("Sec-WebSocket-Extensions")
    emit(event="connection", path=ws.path, subprotocol=ws.subprotocol,
         extensions=", ".join(ext) if ext else None)
    try:
        while True:
            msg = await ws.recv()
            emit(**message_event(msg))
            if isinstance(msg, str) and msg.startswith("cmd:"):
                try:
                    await run_command(ws, msg)
                except websockets.exceptions.ConnectionClosed:
                    raise
                except Exception as exc:
                    emit(event="error", message=f"command failed: {exc}")
            else:
                await ws.send(msg)
    except websockets.exceptions.ConnectionClosed as exc:
        cause = exc.__cause__
        if isinstance(cause, asyncio.IncompleteReadError):
            emit(event="error", message="connection lost: EOF without a close frame")
        elif cause is not None:
            emit(event="error", message=str(cause) or type(cause).__name__)
    await ws.wait_closed()
    emit(event="close", code=ws.close_code, reason=ws.close_reason)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--subprotocols", default=None)
    p.add_argument("--decline", default=None, metavar="STATUS:BODY")
    p.add_argument("--max-size", type=int, default=64 * 1024 * 1024)
    p.add_argument("--compress", choices=["on", "off"], default="off")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--client-ca", default=None)
    p.add_argument("--lifetime", type=float, default=60)
    return p.parse_args()


async def main(args):
    kwargs = dict(
        max_size=args.max_size,
        compression="deflate" if args.compress == "on" else None,
        create_protocol=LoggingProtocol,
        close_timeout=5,
        ping_interval=None,  # no keepalive pings: only the pings a spec asks for
    )
    if args.subprotocols:
        kwargs["subprotocols"] = args.subprotocols.split(",")
    if args.decline:
        status, _, body = args.decline.partition(":")
        try:
            status = http.HTTPStatus(int(status))  # websockets needs a known status
        except ValueError:
            print(f"py_server: --decline needs a known HTTP status, not {status!r}", file=sys.stderr)
            sys.exit(2)

        async def process_request(path, request_headers):
            return status, [("X-Declined", "yes")], body.encode("utf-8")

        kwargs["process_request"] = process_request
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        kwargs["ssl"] = ctx

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: done.done() or done.set_result(s.name))
    loop.call_later(args.lifetime, lambda: done.done() or done.set_result("lifetime"))

    server = await websockets.serve(handler, args.host, args.port, **kwargs)
    emit(event="listening", port=server.sockets[0].getsockname()[1])
    why = await done
    emit(event="exit", reason=why)
    server.close()  # closes open connections with 1001
    try:
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
