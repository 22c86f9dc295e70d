"""Signed tokens: round trip, purpose binding, tampering, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tutormax.tokens import BadToken, Purpose, Signer

signer = Signer(b"test-key")


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=2**32 - 1))
def test_round_trip(message_id, link_id):
    token = signer.sign(Purpose.CLICK, message_id, link_id)
    data = signer.verify(Purpose.CLICK, token)
    assert (data.message_id, data.link_id) == (message_id, link_id)
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token


def test_a_token_is_only_good_for_its_purpose():
    token = signer.sign(Purpose.CLICK, 42)
    with pytest.raises(BadToken):
        signer.verify(Purpose.UNSUBSCRIBE, token)


def test_another_key_cannot_forge():
    with pytest.raises(BadToken):
        Signer(b"other-key").verify(Purpose.OPEN, signer.sign(Purpose.OPEN, 42))


def test_every_single_character_change_is_rejected():
    token = signer.sign(Purpose.FEEDBACK, 7)
    for i in range(len(token)):
        for replacement in "A_-z9":
            tampered = token[:i] + replacement + token[i + 1 :]
            if tampered != token:
                with pytest.raises(BadToken):
                    signer.verify(Purpose.FEEDBACK, tampered)


@given(st.text(max_size=200))
def test_garbage_is_a_bad_token_never_a_crash(garbage):
    with pytest.raises(BadToken):
        signer.verify(Purpose.OPEN, garbage)


def test_extra_payload_is_signed_too():
    token = signer.sign(Purpose.CLICK, 9, 3, b"cta\nhttps://example.com/a?b=c")
    assert signer.verify(Purpose.CLICK, token).extra == b"cta\nhttps://example.com/a?b=c"
    forged = Signer(b"test-key").sign(Purpose.CLICK, 9, 3, b"cta\nhttps://evil.example/")
    assert forged != token  # different payload, different MAC: tampering with the URL breaks the token
    with pytest.raises(BadToken):
        signer.verify(Purpose.CLICK, token[:-4])
