"""DKIM (RFC 6376): a DKIM-Signature for each message, relaxed/simple, rsa-sha256 or ed25519-sha256 (RFC 8463).

dkimpy canonicalizes the headers and the body and verifies signatures in the tests; the
signature itself is made with the `cryptography` package (OpenSSL): dkimpy's own pure-Python
RSA took 7.4 ms a message here against 0.24 ms, and OpenSSL releases the GIL while it signs, so
a message is signed while the SMTP server reads the one before it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import CanonicalizationPolicy

# RFC 8058 4: List-Unsubscribe and List-Unsubscribe-Post must be signed, or a one-click unsubscribe
# could be forged onto a message; From, once more than it appears, so no second From can be added
SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "List-ID",
                  "List-Unsubscribe", "List-Unsubscribe-Post")
OVERSIGNED = ("From",)
MIN_RSA_BITS = 2048

_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/simple")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def load_key(pem: bytes) -> PrivateKey:
    """The private key in a PEM; ValueError says what is wrong with it (never what it holds)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"is a {key.key_size}-bit RSA key; DKIM keys must have at least {MIN_RSA_BITS} bits")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError("must be an RSA or Ed25519 key")


def public_record(key: PrivateKey) -> str:
    """The DNS TXT record that publishes the key: <selector>._domainkey.<domain> IN TXT "..."."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


class Signer:
    """Signs built messages for one domain and selector."""

    def __init__(self, domain: str, selector: str, key: PrivateKey) -> None:
        self.key = key
        algorithm = b"ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
        self._tags = [(b"v", b"1"), (b"a", algorithm), (b"c", b"relaxed/simple"), (b"d", domain.encode()),
                      (b"s", selector.encode())]

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header in front (data's lines end in CRLF)."""
        head, _, body = data.partition(b"\r\n\r\n")
        headers = _headers(head)
        present = {name.strip().lower().decode("ascii", "replace") for name, _ in headers}
        signed = [h for h in SIGNED_HEADERS if h.lower() in present] + list(OVERSIGNED)
        body_hash = base64.b64encode(hashlib.sha256(_POLICY.canonicalize_body(body)).digest())
        tags = [*self._tags, (b"h", b":".join(h.encode() for h in signed)), (b"bh", body_hash), (b"b", b"")]
        unsigned = _folded(tags)
        # the headers the signature covers, each name taken from the bottom up (RFC 6376 5.4.2); an
        # over-signed name absent a second time hashes as nothing, so one added later breaks the signature
        canonical = _POLICY.canonicalize_headers(headers)
        taken: dict[bytes, int] = {}
        hashed = []
        for name in signed:
            key = name.lower().encode()
            found = [(n, v) for n, v in canonical if n.lower() == key]
            taken[key] = taken.get(key, 0) + 1
            if taken[key] <= len(found):
                n, v = found[-taken[key]]
                hashed.append(n + b":" + v)
        (_, own), = _POLICY.canonicalize_headers([(b"DKIM-Signature", unsigned.partition(b":")[2] + b"\r\n")])
        signature = base64.b64encode(self._sign(b"".join(hashed) + b"dkim-signature:" + own.rstrip(b"\r\n")))
        # the b= value may fold anywhere: a verifier removes it, whitespace and all, before hashing
        folded = b"".join(b"\r\n " + signature[i:i + 72] for i in range(0, len(signature), 72))
        return unsigned + folded + b"\r\n" + data

    def _sign(self, signing_input: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            # RFC 8463: Ed25519 over the SHA-256 of the canonicalized headers
            return self.key.sign(hashlib.sha256(signing_input).digest())
        return self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def _folded(tags: list[tuple[bytes, bytes]]) -> bytes:
    """The header with b= empty, folded where the RFC lets whitespace be: between tags, after h='s colons.

    Lines stay under 78 octets. It is hashed as it will travel: a verifier's relaxed canonicalization
    reads each fold as a space, so folding mid-token (as dkimpy's fold does in a long h=) breaks it.
    """
    words = []
    for i, (name, value) in enumerate(tags):
        end = b";" if i < len(tags) - 1 else b""
        parts = value.split(b":") if name == b"h" else [value]
        words.append([name + b"=" + parts[0]] + parts[1:])
        words[-1] = [p + b":" for p in words[-1][:-1]] + [words[-1][-1] + end]
    lines, line = [], b"DKIM-Signature:"
    for tag in words:
        for j, word in enumerate(tag):
            gap = b" " if j == 0 else b""
            if len(line) + len(gap) + len(word) > 76:
                lines.append(line)
                line, gap = b"", b" "
            line += gap + word
    return b"\r\n".join([*lines, line])


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs of a header block, folded continuation lines kept with their header."""
    headers: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += b"\r\n" + line
        else:
            name, _, value = line.partition(b":")
            headers.append([name, value])
    return [(name, value + b"\r\n") for name, value in headers]


@lru_cache(maxsize=4)
def signer_for(domain: str, selector: str, pem: str) -> Signer | None:
    """The configured signer, or None when DKIM is not configured (parsed once a process: 30 ms a key)."""
    return Signer(domain, selector, load_key(pem.encode())) if pem else None
