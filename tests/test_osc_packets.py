"""Reading OSC packets from strangers: bundle framing checked here, messages by python-osc."""

from __future__ import annotations

import pytest

from pxcontrol.osc_bridge import build
from pxcontrol.osc_packets import Malformed, message_datagrams, parse_message, unsupported_type


def bundle(*elements: bytes, tag: bytes = bytes(8)) -> bytes:
    return b"#bundle\0" + tag + b"".join(len(e).to_bytes(4, "big") + e for e in elements)


def test_bundles_are_unpacked_in_the_order_their_messages_stand():
    first, second, third = build("/a", 1), build("/b", "x"), build("/c")
    later = (2**32).to_bytes(8, "big")  # a time tag far away: not waited for, not reordered
    packet = bundle(first, bundle(second, tag=later), third)
    assert message_datagrams(packet) == [first, second, third]
    assert [parse_message(d).address for d in message_datagrams(packet)] == ["/a", "/b", "/c"]
    assert message_datagrams(first) == [first]


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"#bundle\0" + bytes(8) + (-4).to_bytes(4, "big", signed=True), "size -4"),
        (b"#bundle\0" + bytes(8) + (0).to_bytes(4, "big"), "size 0"),
        (b"#bundle\0" + bytes(8) + (64).to_bytes(4, "big") + build("/x"), "size 64"),
        (b"#bundle\0" + bytes(4), "without its time tag"),
    ],
)
def test_bundle_framing_that_would_hang_or_mislead_python_osc_is_malformed(packet, why):
    with pytest.raises(Malformed, match=why):
        message_datagrams(packet)


def test_nesting_is_bounded():
    packet = build("/deep")
    for _ in range(8):
        packet = bundle(packet)
    assert message_datagrams(packet) == [build("/deep")]
    with pytest.raises(Malformed, match="nested deeper than 8"):
        message_datagrams(bundle(packet))


def test_a_type_python_osc_would_drop_is_named_and_garbage_is_malformed():
    liblo_symbol = b"/pxcontrol/backup/switch\0\0\0\0,S\0\0Playout1\0\0\0\0"
    assert unsupported_type(liblo_symbol) == ("/pxcontrol/backup/switch", "S")
    assert unsupported_type(build("/x", 1, 2.5, "s")) is None
    with pytest.raises(Malformed, match="does not start with '/'"):
        parse_message(b"\xff\x00garbage")
    with pytest.raises(Malformed):
        parse_message(b"/x\0\0,i\0\0")  # an int without its four bytes
