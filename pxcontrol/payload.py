"""Bytes for devices, written in a show file as text or as hex."""

from __future__ import annotations


def to_bytes(data: str, hex: bool = False) -> bytes:
    """`"PLAY\\r"` as UTF-8, or `"02 41 0d"` (spaces and colons allowed) as raw bytes when `hex`."""
    if not hex:
        return data.encode("utf-8")
    cleaned = data.replace(" ", "").replace(":", "").replace("0x", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(
            f"{data!r} is not hex bytes: write pairs of hex digits like '02 41 0d'"
        ) from None


def from_bytes(data: bytes, hex: bool = False) -> str:
    return data.hex(" ") if hex else data.decode("utf-8", errors="replace")
