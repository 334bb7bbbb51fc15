"""What an attacker sends: pixel bombs made without the memory they cost, raw HTTP by hand."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import zlib
from collections.abc import AsyncIterator

from PIL import Image


def png_bomb(width: int, height: int) -> bytes:
    """A grey RGB PNG of `width` x `height` that compresses to almost nothing (a decompression
    bomb), written row by row so making it costs one row of memory."""
    row = b"\x00" + b"\x80" * (width * 3)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A flat grey JPEG of `width` x `height`: small on disk, large decoded."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).convert("RGB").save(buffer, "JPEG", quality=20)
    return buffer.getvalue()


@contextlib.asynccontextmanager
async def raw_connection(
    host: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection, for requests no HTTP client would send."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def post_head(content_length: int | None = None) -> bytes:
    """The head of a chat-completions POST, announcing `content_length` bytes (or, with None,
    cut off before its headers end)."""
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    if content_length is None:
        return head
    return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % content_length


async def exchange(host: str, port: int, sent: bytes, within: float) -> tuple[bytes, bytes]:
    """Send `sent` as it is, then read the answer (head, body) until the server closes."""
    async with raw_connection(host, port) as (reader, writer):
        writer.write(sent)
        await writer.drain()
        answer = await read_until_closed(reader, within)
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection; TimeoutError if it doesn't."""
    data = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            data += chunk
    return data
