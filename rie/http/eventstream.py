"""AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), for streamed invokes.

A message is: total length and headers length (4 bytes each, big-endian), a CRC32 of those 8
bytes, the headers, the payload, and a CRC32 of everything before it. Headers here are all strings
(type 7): a 1-byte name length, the name, the type, a 2-byte value length, the value.
"""

from __future__ import annotations

import struct
import zlib

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def _headers(pairs: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in pairs.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += (
            struct.pack("!B", len(raw_name))
            + raw_name
            + struct.pack("!BH", _STRING, len(raw_value))
            + raw_value
        )
    return bytes(out)


def encode(
    event_type: str, payload: bytes, content_type: str = "application/octet-stream"
) -> bytes:
    headers = _headers(
        {":event-type": event_type, ":content-type": content_type, ":message-type": "event"}
    )
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def decode(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The messages in `data`, checked (for tests and tools)."""
    messages = []
    while data:
        total, headers_len = struct.unpack("!II", data[:8])
        if zlib.crc32(data[:8]) != struct.unpack("!I", data[8:12])[0]:
            raise ValueError("prelude CRC mismatch")
        if zlib.crc32(data[: total - 4]) != struct.unpack("!I", data[total - 4 : total])[0]:
            raise ValueError("message CRC mismatch")
        raw, headers, i = data[12 : 12 + headers_len], {}, 0
        while i < len(raw):
            n = raw[i]
            name = raw[i + 1 : i + 1 + n].decode()
            i += 1 + n + 1  # name, then the value type
            (length,) = struct.unpack("!H", raw[i : i + 2])
            headers[name] = raw[i + 2 : i + 2 + length].decode()
            i += 2 + length
        messages.append((headers, data[12 + headers_len : total - 4]))
        data = data[total:]
    return messages
