"""VERP tags: they find their message, survive lower-casing and refuse anything forged or foreign."""

from __future__ import annotations

import pytest

from tutormax.verp import Verp

VERP = Verp("bounces@bounce.tutormax.example", b"secret")


def test_a_tag_finds_its_message_even_lower_or_upper_cased():
    address = VERP.address(42)
    assert address.startswith("bounces+") and address.endswith("@bounce.tutormax.example")
    local = address.split("@")[0]
    assert len(local) <= 64 and local == local.lower()
    for spelling in (address, address.upper(), f"<{address}>", f" {address} "):
        assert VERP.message_id(spelling) == 42


@pytest.mark.parametrize("address", [
    "bounces@bounce.tutormax.example",                      # no tag
    "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaa@bounce.tutormax.example",  # a tag nobody signed
    "other+{tag}@bounce.tutormax.example",                  # another local part
    "bounces+{tag}@elsewhere.example",                      # another domain
    "bounces+{tag}x@bounce.tutormax.example",               # a tag with more in it
    "bounces+!!!@bounce.tutormax.example",
    "not an address",
])
def test_anything_else_is_none(address):
    tag = VERP.address(42).split("+")[1].split("@")[0]
    assert VERP.message_id(address.format(tag=tag)) is None


def test_another_secret_reads_no_tag():
    assert Verp("bounces@bounce.tutormax.example", b"other").message_id(VERP.address(42)) is None
