"""The public keys provider webhooks are verified with."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key


def load_ec_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key, as its settings page shows it (base64 DER) or as PEM."""
    text = text.strip()
    try:
        key = (load_pem_public_key(text.encode()) if text.startswith("-----BEGIN")
               else load_der_public_key(base64.b64decode(text, validate=True)))
    except (ValueError, binascii.Error, TypeError):
        raise ValueError("is not a public key (base64 DER or PEM)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("must be an elliptic-curve (ECDSA) public key")
    return key
