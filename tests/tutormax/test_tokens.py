"""Signed tokens: round trip, purpose binding, tampering, garbage, one spelling per token."""

from __future__ import annotations

import base64
import string

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


URLSAFE = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"  # in base64 order


def _decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _respellings(token: str) -> set[str]:
    """Other spellings of the same bytes that a lenient base64 decoder reads as this token."""
    found = {token + "=" * (-len(token) % 4), token + "==", token + "====",
             token.replace("-", "+").replace("_", "/"), token.replace("-", "+"), token.replace("_", "/")}
    found |= {token[:i] + c + token[i:] for c in "~=. \n!%*" for i in (0, 1, len(token) // 2, len(token))}
    return found - {token}


def _same_bytes_other_final_character(token: str) -> str:
    # base64 of a length that is not a multiple of 3 leaves unused low bits in its final character
    return token[:-1] + URLSAFE[URLSAFE.index(token[-1]) ^ 1]


@pytest.mark.parametrize("extra", [b"", b"a", b"ab"], ids=["no-padding", "two-padding", "one-padding"])
def test_a_token_has_exactly_one_spelling(extra):
    # a token with "-" and "_" in it, so that "+" and "/" have something to stand for
    token = next(t for t in (signer.sign(Purpose.CLICK, mid, 1, extra) for mid in range(10_000))
                 if "-" in t and "_" in t)
    assert signer.verify(Purpose.CLICK, token).extra == extra
    respellings = _respellings(token)
    if len(token) % 4:
        flipped = _same_bytes_other_final_character(token)
        assert flipped != token and _decoded(flipped) == _decoded(token)
        respellings.add(flipped)
    accepted = []
    for other in sorted(respellings):
        try:
            signer.verify(Purpose.CLICK, other)
            accepted.append(other)
        except BadToken:
            pass
    assert accepted == []
