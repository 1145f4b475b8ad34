"""Reading OSC packets from strangers: bundles unpacked here, messages parsed by python-osc.

python-osc's bundle parser loops for ever on an element size of -4 (20 bytes
hang the loop) and sorts by time tag; its message parser silently drops the
argument types it does not know (liblo's `S`, `c`, `I` …) and shifts the rest.
So the bundle framing is walked here, where every size is checked, each message's
type tags are checked before python-osc parses it, and `I` (OSC 1.1's impulse, which
carries no value) is taken out of the tags.
"""

from __future__ import annotations

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message import ParseError as MessageParseError

BUNDLE = b"#bundle\0"
MAX_NESTING = 8  # bundles in bundles: no console nests deeper
SUPPORTED_TYPES = frozenset("ifdsbhtTFNmr")  # what python-osc decodes
# OSC 1.1's impulse (liblo's "infinitum") carries no bytes and no value: a button's press.
# python-osc does not know it, so it is taken out of the type tags before parsing.
IMPULSE = "I"


class Malformed(ValueError):
    """Not an OSC packet anyone should act on; the message says why."""


def message_datagrams(packet: bytes, depth: int = 0) -> list[bytes]:
    """The messages of a packet in the order they stand, bundles unpacked.

    A time tag is not waited for: a bundle's messages are for now. Raises
    Malformed for an element size that is negative, zero or runs past the end,
    and for bundles nested deeper than MAX_NESTING.
    """
    if not packet.startswith(BUNDLE):
        return [packet]
    if depth >= MAX_NESTING:
        raise Malformed(f"bundles nested deeper than {MAX_NESTING}")
    if len(packet) < 16:
        raise Malformed("a bundle without its time tag")
    found: list[bytes] = []
    at = 16  # "#bundle\0" and the time tag
    while at < len(packet):
        size = int.from_bytes(packet[at : at + 4], "big", signed=True)
        end = at + 4 + size
        if at + 4 > len(packet) or size <= 0 or end > len(packet):
            raise Malformed(f"a bundle element of size {size} at byte {at}")
        found += message_datagrams(packet[at + 4 : end], depth + 1)
        at = end
    return found


def unsupported_type(datagram: bytes) -> tuple[str, str] | None:
    """(address, type tag) of the message's first argument python-osc cannot decode.

    Anything else wrong with the message is left for the parser to report.
    """
    end = datagram.find(b"\0")
    if end <= 0:
        return None
    tags_at = (end + 4) & ~3
    if datagram[tags_at : tags_at + 1] != b",":
        return None
    tags_end = datagram.find(b"\0", tags_at)
    tags = datagram[tags_at + 1 : tags_end if tags_end != -1 else None]
    for tag in tags.decode("ascii", "replace"):
        if tag not in SUPPORTED_TYPES and tag != IMPULSE:
            return datagram[:end].decode("ascii", "replace"), tag
    return None


def parse_message(datagram: bytes) -> OscMessage:
    """python-osc's message, or Malformed with its reason."""
    if datagram[:1] != b"/":
        raise Malformed("not an OSC message: it does not start with '/'")
    try:
        return OscMessage(_without_impulses(datagram))
    except (
        MessageParseError,
        IndexError,
        ValueError,
        TypeError,
        OverflowError,
        UnicodeError,
    ) as exc:
        raise Malformed(f"not an OSC message: {exc}") from None


def _without_impulses(datagram: bytes) -> bytes:
    """The message with its `I` type tags taken out; the argument bytes stay as they are."""
    tags_at = (datagram.find(b"\0") + 4) & ~3
    tags_end = datagram.find(b"\0", tags_at)
    tags = datagram[tags_at:tags_end]
    if tags_end == -1 or tags[:1] != b"," or b"I" not in tags:
        return datagram
    kept = tags.replace(b"I", b"")
    data_at = tags_at + ((tags_end - tags_at + 4) & ~3)
    return datagram[:tags_at] + kept + b"\0" * (4 - len(kept) % 4) + datagram[data_at:]
