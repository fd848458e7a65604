"""The App Store's pinned root, the chain checks against Apple's real root, prices and settings."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from braze_forwarder.config import APPLE_ROOT_CA_G3_SHA256, ConfigurationError, WebhookSettings
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.ingest.webhooks import app_store_jws
from braze_forwarder.ingest.webhooks.app_store import from_milliunits
from local.app_store_ca import INTERMEDIATE_OID, LEAF_OID, SigningChain, build_chain
from tests.conftest import ROOT

# Apple Root CA - G3 as Apple publishes it (www.apple.com/certificateauthority/AppleRootCA-G3.cer), base64
# DER. Published fingerprints: SHA-256 63:34:3A:BF:…:91:79, SHA-1 B5:2C:B0:2F:…:01:B0.
APPLE_ROOT_CA_G3 = (
    "MIICQzCCAcmgAwIBAgIILcX8iNLFS5UwCgYIKoZIzj0EAwMwZzEbMBkGA1UEAwwSQXBwbGUgUm9vdCBDQSAtIEczMSYwJAYDVQQL"
    "DB1BcHBsZSBDZXJ0aWZpY2F0aW9uIEF1dGhvcml0eTETMBEGA1UECgwKQXBwbGUgSW5jLjELMAkGA1UEBhMCVVMwHhcNMTQwNDMw"
    "MTgxOTA2WhcNMzkwNDMwMTgxOTA2WjBnMRswGQYDVQQDDBJBcHBsZSBSb290IENBIC0gRzMxJjAkBgNVBAsMHUFwcGxlIENlcnRp"
    "ZmljYXRpb24gQXV0aG9yaXR5MRMwEQYDVQQKDApBcHBsZSBJbmMuMQswCQYDVQQGEwJVUzB2MBAGByqGSM49AgEGBSuBBAAiA2IA"
    "BJjpLz1AcqTtkyJygRMc3RCV8cWjTnHcFBbZDuWmBSp3ZHtfTjjTuxxEtX/1H7YyYl3J6YRbTzBPEVoA/VhYDKX1DyxNB0cTddqX"
    "l5dvMVztK517IDvYuVTZXpmkOlEKMaNCMEAwHQYDVR0OBBYEFLuw3qFYM4iapIqZ3r6966/ayySrMA8GA1UdEwEB/wQFMAMBAf8w"
    "DgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMDA2gAMGUCMQCD6cHEFl4aXTQY2e3v9GwOAEZLuN+yRhHFD/3meoyhpmvOwgPUnPWT"
    "xnS4at+qIxUCMG1mihDK1A3UT82NQz60imOlM27jbdoXt2QfyFMm+YhidDkLF1vLUagM6BgD56KyKA=="
)


def test_the_pinned_fingerprint_is_apples_published_root():
    der = base64.b64decode(APPLE_ROOT_CA_G3)
    root = x509.load_der_x509_certificate(der)
    assert root.subject.rfc4514_string() == "C=US,O=Apple Inc.,OU=Apple Certification Authority,CN=Apple Root CA - G3"
    assert hashlib.sha1(der).hexdigest() == "b52cb02fd567e0359fe8fa4d4c41037970fe01b0"  # noqa: S324 (a published fingerprint)
    assert app_store_jws.sha256_fingerprint(der) == APPLE_ROOT_CA_G3_SHA256
    assert WebhookSettings.__dataclass_fields__["app_store_trusted_root_sha256"].default == (APPLE_ROOT_CA_G3_SHA256,)


def _forged_under_apples_root() -> SigningChain:
    """Apple's real root in x5c, with an intermediate that claims Apple's name but is signed by another key:
    the pin passes, the link must not."""
    apple_root = x509.load_der_x509_certificate(base64.b64decode(APPLE_ROOT_CA_G3))
    now = datetime.now(UTC)
    forger, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    test = build_chain()

    def certificate(subject, issuer, key, signer, ca, oid):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
        )
        return builder.sign(signer, hashes.SHA256())

    intermediate_name = test.certificates[1].subject
    intermediate = certificate(intermediate_name, apple_root.subject, intermediate_key, forger, True, INTERMEDIATE_OID)
    leaf = certificate(test.certificates[0].subject, intermediate_name, leaf_key, intermediate_key, False, LEAF_OID)
    return SigningChain(leaf_key, (leaf, intermediate, apple_root))


def test_a_chain_that_names_apples_root_but_was_not_signed_by_it_is_refused():
    chain = _forged_under_apples_root()
    token = chain.sign({"signedDate": int(time.time() * 1000)})

    with pytest.raises(RequestRejected) as refused:
        app_store_jws.verified(token, "signedPayload", (APPLE_ROOT_CA_G3_SHA256,))

    assert (refused.value.status, refused.value.type) == (401, "broken_certificate_chain")
    assert "not signed by the root" in refused.value.reason


def test_a_trusted_chain_verifies_and_returns_the_payload_and_its_signed_date():
    chain = build_chain()
    signed = int(time.time() * 1000)

    data = app_store_jws.verified(chain.sign({"signedDate": signed, "a": 1}), "signedPayload", (chain.root_sha256,))

    assert (data.payload, data.signed_at_ms) == ({"signedDate": signed, "a": 1}, signed)


@pytest.mark.parametrize(
    ("amount", "currency", "price"),
    [(4990, "USD", 4.99), (1_200_000, "JPY", 1200.0), (1_234, "KWD", 1.234), (999, "EUR", 1.0), (12, "JPY", 0.0)],
)
def test_milliunits_become_the_currencys_own_decimals(amount, currency, price):
    assert from_milliunits(amount, currency) == price


REQUIRED = {
    "EVENTS_QUEUE_URL": "q",
    "INGEST_KEYS_SECRET_ARN": "k",
    "IDEMPOTENCY_TABLE": "t",
    "USER_ORDER_TABLE": "order",
    "WEBHOOK_SECRETS_ARN": "w",
    "REJECTED_BUCKET": "b",
}


def test_fingerprints_may_be_written_with_colons_and_any_case():
    colons = ":".join(APPLE_ROOT_CA_G3_SHA256[i : i + 2] for i in range(0, 64, 2)).upper()
    config = WebhookSettings.from_environ({**REQUIRED, "APP_STORE_TRUSTED_ROOT_SHA256": f"{colons}, {'ab' * 32}"})
    assert config.app_store_trusted_root_sha256 == (APPLE_ROOT_CA_G3_SHA256, "ab" * 32)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APP_STORE_TRUSTED_ROOT_SHA256", "not-a-fingerprint"),
        ("APP_STORE_TRUSTED_ROOT_SHA256", ""),
        ("APP_STORE_ENVIRONMENTS", "Production,Xcode"),
        ("APP_STORE_BUNDLE_ID", "com.example/app"),
    ],
)
def test_invalid_app_store_settings_fail_the_cold_start_naming_the_variable(name, value):
    with pytest.raises(ConfigurationError, match=name):
        WebhookSettings.from_environ({**REQUIRED, name: value})


def test_track_requests_never_load_the_app_store_crypto_libraries():
    # cryptography and PyJWT cost the cold start only of a function that takes an App Store notification.
    script = (
        "import sys, functions.ingest_api.app; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'jwt') "
        "or m.endswith('app_store_jws'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import json; {script}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'layers' / 'shared'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(result.stdout) == []
