"""What py_client.py and py_server.py share: the JSON event log on stdout and
the payload helpers. Contract: spec/peers/README.md."""
import hashlib
import json
import sys

sys.stdout.reconfigure(encoding="utf-8")


def emit(**event):
    sys.stdout.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def payload_fields(data):
    """Control-frame payload: text when it is valid UTF-8 (else null), and hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"payload": text, "hex": data.hex()}


def message_event(msg):
    if isinstance(msg, str):
        raw = msg.encode("utf-8")
        return dict(event="message", type="text", length=len(raw),
                    sha256=hashlib.sha256(raw).hexdigest(), text=msg[:200])
    return dict(event="message", type="binary", length=len(msg),
                sha256=hashlib.sha256(msg).hexdigest())


def pattern(n):
    """n bytes, byte i = i % 251."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def headers_dict(headers):
    """Header names lower-cased; repeated headers joined with ", "."""
    out = {}
    for name, value in headers.raw_items():
        name = name.lower()
        out[name] = out[name] + ", " + value if name in out else value
    return out
