#!/usr/bin/python3
"""Scripted WebSocket client around Python's `websockets` (Debian's 10.x,
legacy asyncio API). Run with /usr/bin/python3. Contract: spec/peers/README.md.

Every event is one JSON line on stdout, flushed. Diagnostics go to stderr.
Exit status: 0 all steps ran, 1 a step or the connection failed,
2 bad usage, 3 --lifetime expired.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

import websockets
from websockets.frames import OP_PING, OP_PONG
from websockets.legacy.client import WebSocketClientProtocol

from py_common import emit, headers_dict, message_event, payload_fields, pattern

STEP_TIMEOUT = 10


class StepError(Exception):
    pass


class LoggingProtocol(WebSocketClientProtocol):
    """Logs received pings/pongs (not exposed by the library: hook the frame
    reader) and keeps the body of a declined upgrade (websockets 10 raises
    InvalidStatusCode without it; read_http_response documents that the body
    may be read from self.reader after it returns)."""

    rejected = False  # set once the "rejected" event is out

    async def read_frame(self, max_size):
        frame = await super().read_frame(max_size)
        if frame.opcode == OP_PING:
            emit(event="ping", **payload_fields(frame.data))
        elif frame.opcode == OP_PONG:
            emit(event="pong", **payload_fields(frame.data))
        return frame

    async def read_http_response(self):
        status, headers = await super().read_http_response()
        if status != 101 and status not in (301, 302, 303, 307, 308):
            body = b""
            try:
                if "Content-Length" in headers:
                    body = await asyncio.wait_for(
                        self.reader.readexactly(int(headers["Content-Length"])), 2)
                else:
                    body = await asyncio.wait_for(self.reader.read(1 << 20), 2)
            except Exception as exc:  # keep what we have; report the status anyway
                print(f"py_client: reading rejection body: {exc!r}", file=sys.stderr)
            emit(event="rejected", status=status, body=body.decode("utf-8", "replace"),
                 headers=headers_dict(headers))
            LoggingProtocol.rejected = True
        return status, headers


async def reader(ws, queue):
    try:
        while True:
            msg = await ws.recv()
            emit(**message_event(msg))
            queue.put_nowait(msg)
    except websockets.exceptions.ConnectionClosed as exc:
        cause = exc.__cause__
        if isinstance(cause, asyncio.IncompleteReadError):
            emit(event="error", message="connection lost: EOF without a close frame")
        elif cause is not None:
            emit(event="error", message=str(cause) or type(cause).__name__)
    queue.put_nowait(None)  # wakes a pending expect: the connection is gone


async def closer(ws):
    await ws.wait_closed()
    emit(event="close", code=ws.close_code, reason=ws.close_reason)


async def run_step(ws, step, queue, closed):
    if "send" in step:
        kind = step["send"]
        if kind == "text":
            await ws.send(step["data"])
        elif kind == "binary":
            await ws.send(bytes.fromhex(step["hex"]) if "hex" in step else pattern(step["size"]))
        elif kind == "fragments":
            # One frame per part, then an empty FIN continuation frame.
            await ws.send(list(step["parts"]))
        else:
            raise StepError(f"unknown send kind {kind!r}")
    elif "expect" in step:
        try:
            msg = await asyncio.wait_for(queue.get(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise StepError("no message within %d s" % STEP_TIMEOUT)
        if msg is None:
            queue.put_nowait(None)  # for any later expect
            raise StepError("connection closed while expecting a message")
    elif "ping" in step:
        waiter = await ws.ping(step["ping"].encode("utf-8"))
        await asyncio.wait_for(waiter, STEP_TIMEOUT)  # the pong itself is logged by read_frame
    elif "close" in step:
        await ws.close(step["close"], step.get("reason", ""))
        await asyncio.wait_for(asyncio.shield(closed), STEP_TIMEOUT)
        if ws.close_code == 1006:
            raise StepError("close handshake did not complete")
    elif "wait_close" in step:
        try:
            await asyncio.wait_for(asyncio.shield(closed), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise StepError("server did not close within %d s" % STEP_TIMEOUT)
    elif "sleep" in step:
        await asyncio.sleep(step["sleep"])
    else:
        raise StepError(f"unknown step {step!r}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--ca", default=None)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--cert", nargs=2, metavar=("CERT", "KEY"), help="client certificate")
    p.add_argument("--subprotocols", default=None)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--compress", choices=["on", "off"], default="off")
    p.add_argument("--max-size", type=int, default=64 * 1024 * 1024)
    p.add_argument("--lifetime", type=float, default=60)
    p.add_argument("--script", default=None)
    return p.parse_args()


async def session(args, steps):
    kwargs = dict(
        max_size=args.max_size,
        compression="deflate" if args.compress == "on" else None,
        create_protocol=LoggingProtocol,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
        ping_interval=None,  # no keepalive pings: only the pings a spec asks for
    )
    if args.subprotocols:
        kwargs["subprotocols"] = args.subprotocols.split(",")
    headers = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            raise SystemExit(f"py_client: bad --header {h!r}")
        headers.append((name.strip(), value.strip()))
    if headers:
        kwargs["extra_headers"] = headers
    if args.url.startswith("wss:"):
        ctx = ssl.create_default_context(cafile=args.ca)
        if args.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if args.cert:
            ctx.load_cert_chain(args.cert[0], args.cert[1])
        kwargs["ssl"] = ctx

    try:
        ws = await websockets.connect(args.url, **kwargs)
    except Exception as exc:
        if isinstance(exc, websockets.exceptions.InvalidStatusCode):
            if not LoggingProtocol.rejected:
                emit(event="rejected", status=exc.status_code, body=None,
                     headers=headers_dict(exc.headers))
        else:
            emit(event="error", message=f"connect failed: {exc}")
        return 1

    ext = ws.response_headers.get_all("Sec-WebSocket-Extensions")
    emit(event="open", subprotocol=ws.subprotocol,
         extensions=", ".join(ext) if ext else None, status=101)
    queue = asyncio.Queue()
    reader_task = asyncio.create_task(reader(ws, queue))
    closed = asyncio.create_task(closer(ws))
    status = 0
    for i, step in enumerate(steps):
        try:
            await run_step(ws, step, queue, closed)
        except Exception as exc:
            emit(event="error", message=f"step {i + 1} {json.dumps(step)[:100]}: {exc or type(exc).__name__}")
            status = 1
            break
    if not ws.closed:
        await ws.close(1000, "")
    try:
        await asyncio.wait_for(asyncio.shield(closed), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        pass
    reader_task.cancel()
    return status


async def main(args):
    steps = []
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            steps = json.load(f)
    task = asyncio.create_task(session(args, steps))
    done, _ = await asyncio.wait({task}, timeout=args.lifetime)
    if not done:
        emit(event="error", message="lifetime expired")
        sys.stdout.flush()
        os._exit(3)
    return task.result()


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except KeyboardInterrupt:
        sys.exit(130)
