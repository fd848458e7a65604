"""App Store Server Notifications V2 as Apple sends them, signed by a test chain (local.app_store_ca).

The shapes follow developer.apple.com/documentation/appstoreservernotifications (responseBodyV2,
JWSTransactionDecodedPayload, JWSRenewalInfoDecodedPayload); the values are made up.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from local.app_store_ca import SigningChain, signed_body

BUNDLE_ID = "com.example.braze.forwarder"
APP_APPLE_ID = 1234567890
APP_ACCOUNT_TOKEN = "7e3fb20b-4cdb-47cc-936d-99d65f608138"
ORIGINAL_TRANSACTION = "2000000000000001"
DAY_MS = 86_400_000


def settings_for(chain: SigningChain, **more: str) -> dict[str, str]:
    """The IngestApiFunction variables under which notifications signed by `chain` for BUNDLE_ID verify."""
    return {"APP_STORE_BUNDLE_ID": BUNDLE_ID, "APP_STORE_TRUSTED_ROOT_SHA256": chain.root_sha256, **more}


def now_ms() -> int:
    return int(time.time() * 1000)


def transaction(signed_ms: int, **fields: Any) -> dict[str, Any]:
    return {
        "transactionId": "2000000000000042",
        "originalTransactionId": ORIGINAL_TRANSACTION,
        "webOrderLineItemId": "2000000000000777",
        "bundleId": BUNDLE_ID,
        "productId": "pro.monthly",
        "subscriptionGroupIdentifier": "21000001",
        "purchaseDate": signed_ms - 1000,
        "originalPurchaseDate": signed_ms - 40 * DAY_MS,
        "expiresDate": signed_ms + 30 * DAY_MS,
        "quantity": 1,
        "type": "Auto-Renewable Subscription",
        "appAccountToken": APP_ACCOUNT_TOKEN,
        "inAppOwnershipType": "PURCHASED",
        "signedDate": signed_ms,
        "environment": "Production",
        "transactionReason": "RENEWAL",
        "storefront": "USA",
        "storefrontId": "143441",
        "price": 4990,
        "currency": "USD",
        **fields,
    }


def renewal(signed_ms: int, **fields: Any) -> dict[str, Any]:
    return {
        "originalTransactionId": ORIGINAL_TRANSACTION,
        "autoRenewProductId": "pro.monthly",
        "productId": "pro.monthly",
        "autoRenewStatus": 1,
        "signedDate": signed_ms,
        "environment": "Production",
        "recentSubscriptionStartDate": signed_ms - 40 * DAY_MS,
        "renewalDate": signed_ms + 30 * DAY_MS,
        "appAccountToken": APP_ACCOUNT_TOKEN,
        **fields,
    }


def notification_body(
    chain: SigningChain,
    notification_type: str,
    subtype: str | None = None,
    *,
    signed_ms: int | None = None,
    notification_uuid: str | None = None,
    environment: str = "Production",
    bundle_id: str = BUNDLE_ID,
    transaction_fields: dict[str, Any] | None = None,
    renewal_fields: dict[str, Any] | None = None,
    with_transaction: bool = True,
    with_renewal: bool = True,
    signing_chain_inner: SigningChain | None = None,
) -> str:
    """{"signedPayload": ...} for one notification; the nested JWS signed by `signing_chain_inner` if given."""
    signed_ms = now_ms() if signed_ms is None else signed_ms
    notification: dict[str, Any] = {
        "notificationType": notification_type,
        "notificationUUID": notification_uuid or str(uuid.uuid4()),
        "version": "2.0",
        "signedDate": signed_ms,
        "data": {
            "appAppleId": APP_APPLE_ID,
            "bundleId": bundle_id,
            "bundleVersion": "42",
            "environment": environment,
            "status": 1,
        },
    }
    if subtype is not None:
        notification["subtype"] = subtype
    inner = {"environment": environment}
    tx = transaction(signed_ms, **{**inner, **(transaction_fields or {})}) if with_transaction else None
    rn = renewal(signed_ms, **{**inner, **(renewal_fields or {})}) if with_renewal else None
    if signing_chain_inner is None:
        return signed_body(chain, notification, tx, rn)
    notification["data"].update(
        {
            **({"signedTransactionInfo": signing_chain_inner.sign(tx)} if tx else {}),
            **({"signedRenewalInfo": signing_chain_inner.sign(rn)} if rn else {}),
        }
    )
    return signed_body(chain, notification)
