"""The App Store's signed data: a JWS (ES256) whose `x5c` header carries the certificate chain that signed it.

Apple signs every notification (`signedPayload`) and the transaction and renewal information inside
it (`signedTransactionInfo`, `signedRenewalInfo`) the same way, so one function verifies all three
(developer.apple.com/documentation/appstoreservernotifications/jwsdecodedheader; Apple's App Store
Server Library, SignedDataVerifier, does the same steps):

    1. the header's `alg` is ES256, nothing else;
    2. `x5c` holds exactly three certificates, leaf, intermediate and root;
    3. the root is one of the pinned ones (its SHA-256: Apple Root CA - G3 by default; a test CA only
       where a setting adds it) — the root is never fetched;
    4. the intermediate is issued and signed by the root and is a CA; the leaf is issued and signed by
       the intermediate and holds a P-256 key;
    5. Apple's extensions: the leaf carries 1.2.840.113635.100.6.11.1 (App Store receipt signing), the
       intermediate 1.2.840.113635.100.6.2.1 (Apple WWDR CA). Without them, any certificate Apple
       issued to any developer under the same root could sign a forged notification;
    6. every certificate is valid at the payload's `signedDate` (Apple's rule: a notification retried
       days later is still verified at the time it was signed);
    7. the JWS signature verifies with the leaf's key.

Libraries, not hand-written crypto: `cryptography` parses the certificates and checks each link's
signature (Certificate.verify_directly_issued_by) and the fingerprints; PyJWT splits the compact JWS,
decodes base64url strictly and checks the ES256 signature (raw r||s, as JWS encodes it) with the
leaf's key. Explicit checks rather than cryptography.x509.verification: that module's policies are the
Web PKI's (server or client authentication, EKU), which Apple's receipt-signing chain is not.

Every failure is a RequestRejected with a stable `type`; nothing about the token is logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from braze_forwarder.http_answers import RequestRejected

LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
ALGORITHM = "ES256"
# Apple's JWS are a few kilobytes; the bounds keep an unsigned request's work small.
MAX_JWS_CHARS = 64 * 1024
MAX_CERTIFICATE_CHARS = 8 * 1024

_JWS = jwt.PyJWS(algorithms=[ALGORITHM])


@dataclass(frozen=True, slots=True)
class SignedData:
    payload: dict[str, Any]
    signed_at_ms: int
    """The payload's signedDate, milliseconds since the epoch: the time the chain was checked at."""


def verified(token: object, field: str, trusted_roots_sha256: Collection[str]) -> SignedData:
    """The payload of an App Store JWS once its chain and signature are checked; RequestRejected if not.

    `field` names the token in answers (signedPayload, data.signedTransactionInfo, ...).
    """
    if not isinstance(token, str) or not 0 < len(token) <= MAX_JWS_CHARS or not token.isascii():
        raise malformed(f"{field} is not a JWS in compact serialization")
    try:
        unverified = _JWS.decode_complete(token, options={"verify_signature": False})
    except jwt.exceptions.PyJWTError:
        raise malformed(f"{field} is not a JWS in compact serialization") from None
    header, payload = unverified["header"], _json_object(unverified["payload"], field)
    if header.get("alg") != ALGORITHM:
        raise RequestRejected(401, "unsupported_algorithm", f"{field} is not signed with ES256")
    signed_at_ms = payload.get("signedDate")
    if type(signed_at_ms) is not int or not 0 < signed_at_ms < 10**14:
        raise malformed(f"{field} has no signedDate in milliseconds")
    leaf_key = _chain_key(header.get("x5c"), field, trusted_roots_sha256, signed_at_ms)
    try:
        _JWS.decode_complete(token, key=leaf_key, algorithms=[ALGORITHM])
    except jwt.exceptions.InvalidSignatureError:
        raise RequestRejected(
            401, "invalid_signature", f"the signature of {field} does not verify with its leaf certificate"
        ) from None
    except jwt.exceptions.PyJWTError:
        raise malformed(f"{field} is not a JWS in compact serialization") from None
    return SignedData(payload, signed_at_ms)


def sha256_fingerprint(certificate_der: bytes) -> str:
    return hashlib.sha256(certificate_der).hexdigest()


def malformed(reason: str) -> RequestRejected:
    return RequestRejected(400, "malformed_notification", reason)


def _json_object(raw: bytes, field: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        document = None
    if type(document) is not dict:
        raise malformed(f"the payload of {field} is not a JSON object")
    return document


def _chain_key(
    x5c: object, field: str, trusted_roots_sha256: Collection[str], signed_at_ms: int
) -> ec.EllipticCurvePublicKey:
    if not isinstance(x5c, list) or len(x5c) != 3:
        raise broken_chain(field, "x5c does not hold three certificates (leaf, intermediate, root)")
    leaf_der, intermediate_der, root_der = (_der(entry, field) for entry in x5c)
    if sha256_fingerprint(root_der) not in trusted_roots_sha256:
        raise RequestRejected(
            401, "untrusted_root", f"the certificate chain of {field} does not end in Apple's root certificate"
        )
    try:
        leaf, intermediate, root = (
            x509.load_der_x509_certificate(der) for der in (leaf_der, intermediate_der, root_der)
        )
    except ValueError:
        raise broken_chain(field, "a certificate in x5c cannot be read") from None
    _check_link(intermediate, root, field, "the intermediate certificate is not signed by the root")
    _check_link(leaf, intermediate, field, "the leaf certificate is not signed by the intermediate")
    if not _is_ca(intermediate) or not _is_ca(root):
        raise broken_chain(field, "the intermediate or root certificate is not a certificate authority")
    _check_extension(leaf, LEAF_OID, field, "leaf")
    _check_extension(intermediate, INTERMEDIATE_OID, field, "intermediate")
    signed_at = datetime.fromtimestamp(signed_at_ms / 1000, UTC)
    for certificate in (leaf, intermediate, root):
        if not certificate.not_valid_before_utc <= signed_at <= certificate.not_valid_after_utc:
            raise RequestRejected(
                401,
                "certificate_not_valid",
                f"a certificate in the chain of {field} was not valid at the payload's signedDate",
            )
    key = leaf.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise broken_chain(field, "the leaf certificate does not hold a P-256 key, which ES256 needs")
    return key


def _der(entry: object, field: str) -> bytes:
    # x5c entries are base64 (RFC 7515 §4.1.6), not base64url.
    if not isinstance(entry, str) or not 0 < len(entry) <= MAX_CERTIFICATE_CHARS:
        raise broken_chain(field, "an x5c entry is not a base64 certificate")
    try:
        return base64.b64decode(entry, validate=True)
    except (binascii.Error, ValueError):
        raise broken_chain(field, "an x5c entry is not a base64 certificate") from None


def _check_link(child: x509.Certificate, issuer: x509.Certificate, field: str, reason: str) -> None:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        # ValueError: the names do not chain; TypeError: a key type the library cannot verify with;
        # InvalidSignature: the names chain but the issuer did not sign it.
        raise broken_chain(field, reason) from None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def _check_extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier, field: str, which: str) -> None:
    try:
        certificate.extensions.get_extension_for_oid(oid)
    except (x509.ExtensionNotFound, ValueError):
        raise RequestRejected(
            401,
            "wrong_certificate",
            f"the {which} certificate of {field} lacks Apple's extension {oid.dotted_string}",
        ) from None


def broken_chain(field: str, reason: str) -> RequestRejected:
    return RequestRejected(401, "broken_certificate_chain", f"{field}: {reason}")
