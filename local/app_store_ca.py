"""A stand-in for Apple's App Store signing chain: a test root, an intermediate and a leaf carrying
Apple's extension OIDs, ES256 keys, made with `cryptography` on the spot (nothing is stored).

The local stack makes one per run and adds its root's SHA-256 to APP_STORE_TRUSTED_ROOT_SHA256
(only there: a deployment trusts Apple Root CA - G3 alone), so notifications signed by it, such as
the demo's replay of events/app_store_*.json, verify as Apple's would. The tests build theirs the same
way, and broken variants (no extension, another root, a lapsed certificate).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
# A notification's signed fields and the nested JWS it may carry (in `data`).
NESTED_FIELDS = ("signedTransactionInfo", "signedRenewalInfo")


@dataclass(frozen=True)
class SigningChain:
    leaf_key: ec.EllipticCurvePrivateKey
    certificates: tuple[x509.Certificate, x509.Certificate, x509.Certificate]  # leaf, intermediate, root

    @property
    def x5c(self) -> list[str]:
        return [
            base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
            for certificate in self.certificates
        ]

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.certificates[2].public_bytes(serialization.Encoding.DER)).hexdigest()

    def sign(self, payload: dict[str, Any], *, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        """A JWS as Apple makes it: header {"alg": "ES256", "x5c": [leaf, intermediate, root]}."""
        return jwt.encode(payload, key or self.leaf_key, algorithm="ES256", headers={"x5c": self.x5c, "typ": None})


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Braze forwarder test CA (not Apple)"),
        ]
    )


def _certificate(
    subject: str,
    issuer: str,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    oid: x509.ObjectIdentifier | None,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if oid is not None:
        # Apple marks these with an empty (NULL) extension value; the presence is what is checked.
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def build_chain(
    *,
    leaf_oid: bool = True,
    intermediate_oid: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    name: str = "Local App Store test",
) -> SigningChain:
    """A root, an intermediate and a leaf (P-256 keys), valid from ten years ago to ten years ahead by
    default (tests move the clock, a year or more either way)."""
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(days=3650)
    not_after = not_after or now + timedelta(days=3650)
    root_key, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    window = {"not_before": not_before, "not_after": not_after}
    root = _certificate(f"{name} root", f"{name} root", root_key.public_key(), root_key, ca=True, oid=None, **window)
    intermediate = _certificate(
        f"{name} intermediate",
        f"{name} root",
        intermediate_key.public_key(),
        root_key,
        ca=True,
        oid=INTERMEDIATE_OID if intermediate_oid else None,
        **window,
    )
    leaf = _certificate(
        f"{name} leaf",
        f"{name} intermediate",
        leaf_key.public_key(),
        intermediate_key,
        ca=False,
        oid=LEAF_OID if leaf_oid else None,
        **window,
    )
    return SigningChain(leaf_key, (leaf, intermediate, root))


def signed_body(
    chain: SigningChain,
    notification: dict[str, Any],
    transaction: dict[str, Any] | None = None,
    renewal: dict[str, Any] | None = None,
) -> str:
    """The body Apple POSTs: {"signedPayload": JWS}, with the transaction and renewal info signed inside."""
    document = copy.deepcopy(notification)
    data = document.setdefault("data", {})
    if transaction is not None:
        data["signedTransactionInfo"] = chain.sign(transaction)
    if renewal is not None:
        data["signedRenewalInfo"] = chain.sign(renewal)
    return json.dumps({"signedPayload": chain.sign(document)})


def resigned_body(body: bytes | str, chain: SigningChain, now_ms: int | None = None) -> str:
    """A recorded notification signed again by `chain`, with every signedDate set to now and a fresh
    notificationUUID: the demo's replay of events/app_store_*.json (the recorded chain is not trusted
    by this run's stack, and a notification older than the dedupe window is refused as a replay)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    outer = json.loads(body)["signedPayload"]
    notification = jwt.decode(outer, options={"verify_signature": False})
    data = notification.get("data") or {}
    inner: dict[str, dict[str, Any] | None] = {}
    for field in NESTED_FIELDS:
        token = data.pop(field, None)
        inner[field] = (
            {**jwt.decode(token, options={"verify_signature": False}), "signedDate": now_ms} if token else None
        )
    notification.update(signedDate=now_ms, notificationUUID=str(uuid.uuid4()), data=data)
    return signed_body(chain, notification, inner["signedTransactionInfo"], inner["signedRenewalInfo"])
