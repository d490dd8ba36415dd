#!/usr/bin/env python3
"""(Re)generates the sample Lambda events in events/ from the App Store fixtures.

    python3 scripts/gen_events.py          # writes events/*.json
    python3 scripts/gen_events.py --check  # exits 1 if events/ is out of date (CI)

- events/appstore-<name>.json: one API Gateway HTTP API (payload v2.0) request per
  tests/fixtures/appstore/*.json, whose body is that fixture's exact "body" ({"signedPayload": ...}).
  Usable with `sam local invoke AppStoreFunction -e ...` and `cargo lambda invoke appstore --data-file ...`.
- events/dispatcher-sqs.json: an SQS FIFO batch of two storehook events (v1, events.md) of the same
  subscription, as the App Store function would enqueue them for the DID_RENEW and EXPIRED fixtures.

Output is deterministic (ids are derived from the fixtures), so regenerating changes nothing
unless a fixture or this script changed. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "appstore"
EVENTS = ROOT / "events"

API_ID = "a1b2c3d4e5"
REGION = "us-east-1"
ACCOUNT = "123456789012"
NAMESPACE = uuid.UUID("6f1c3f0e-8a4e-4d2b-9a37-3b8c1d6e5f70")  # for deterministic sample ids
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:storehook-EventsQueue-1A2B3C4D5E6F.fifo"


def digest_hex(*parts: str) -> str:
    """shared/src/event.rs digest_hex: SHA-256 over b"storehook/v1" + length-prefixed parts, 16 bytes hex."""
    h = hashlib.sha256(b"storehook/v1")
    for p in parts:
        b = p.encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.digest()[:16].hex()


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, like the event language."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def event_name(fixture: Path) -> str:
    """apple_001_DID_RENEW.json -> did-renew"""
    stem = re.sub(r"^apple_\d+_", "", fixture.stem)
    return stem.lower().replace("_", "-")


def http_event(fixture: Path) -> dict:
    data = json.loads(fixture.read_text())
    body = json.dumps(data["body"], separators=(",", ":"))
    signed_ms = int(data.get("expect", {}).get("signedDate", 1_753_689_912_307))
    time_epoch = signed_ms + 850  # the request arrives shortly after Apple signed it
    request_id = uuid.uuid5(NAMESPACE, "req/" + fixture.name)
    trace = hashlib.sha256(fixture.name.encode()).hexdigest()
    host = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
    user_agent = "App Store Server Notifications (storehook sample event)"
    source_ip = "17.58.0.10"
    return {
        "version": "2.0",
        "routeKey": "POST /appstore",
        "rawPath": "/appstore",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": str(len(body.encode())),
            "content-type": "application/json",
            "host": host,
            "user-agent": user_agent,
            "x-amzn-trace-id": f"Root=1-{time_epoch // 1000:08x}-{trace[:24]}",
            "x-forwarded-for": source_ip,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": API_ID,
            "http": {
                "method": "POST",
                "path": "/appstore",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": str(request_id),
            "routeKey": "POST /appstore",
            "stage": "$default",
            "time": datetime.fromtimestamp(time_epoch / 1000, tz=timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": time_epoch,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def country(storefront: str | None) -> str | None:
    # The two storefronts of the fixtures; the real mapping lives in shared/src/country.rs.
    return {"CAN": "CA", "USA": "US"}.get(storefront or "")


def jws_payload(jws: str) -> dict:
    """The payload of a compact JWS, decoded without verification (the fixtures are Apple-signed)."""
    part = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def storehook_event(fixture: Path, kind: str, status: str, details: dict) -> dict:
    """A v1 event (events.md) as the App Store function enqueues it: sequence 0 (the dispatcher assigns it)."""
    data = json.loads(fixture.read_text())
    e = data["expect"]
    notification = jws_payload(data["body"]["signedPayload"])
    txn = jws_payload(notification["data"]["signedTransactionInfo"])
    signed = int(e["signedDate"])
    expires = e.get("expiresDate")
    active = status in ("ACTIVE", "CANCELED_ACTIVE", "IN_GRACE_PERIOD") and expires is not None and expires > signed
    price = {"amount_micros": int(e["price"]) * 1000, "currency": e["currency"]} if "price" in e else None
    return {
        "api_version": 1,
        "id": "evt_" + digest_hex("APP_STORE", e["notificationUUID"]),
        "type": kind,
        "occurred_at": iso_ms(signed),
        "received_at": iso_ms(signed + 850),
        "sequence": 0,
        "store": "APP_STORE",
        "environment": e["environment"].upper(),
        "app_id": e["bundleId"],
        "app_user_id": txn.get("appAccountToken"),
        "product": {"id": e["productId"], "plan_id": None, "kind": "AUTO_RENEWABLE"},
        "subscription": {
            "id": "sub_" + digest_hex("APP_STORE", e["originalTransactionId"]),
            "store_subscription_id": e["originalTransactionId"],
            "status": status,
            "auto_renew": e.get("autoRenewStatus") == 1,
            "period_type": "NORMAL",
            "started_at": iso_ms(int(txn["originalPurchaseDate"])) if "originalPurchaseDate" in txn else None,
            "current_period_started_at": iso_ms(int(e["purchaseDate"])),
            "expires_at": iso_ms(int(expires)) if expires else None,
            "grace_period_expires_at": None,
            "renewal_product_id": e.get("autoRenewProductId"),
            "price": price,
            "country": country(e.get("storefront")),
        },
        "transaction": {
            "id": e["transactionId"],
            "original_id": e["originalTransactionId"],
            "purchased_at": iso_ms(int(e["purchaseDate"])),
            "price": price,
        },
        "entitlement": {"active": active, "expires_at": iso_ms(int(expires)) if expires else None},
        "details": details,
        "store_notification": {
            "type": e["notificationType"],
            "subtype": e.get("subtype"),
            "id": e["notificationUUID"],
        },
    }


def sqs_record(event: dict, index: int, receive_count: int) -> dict:
    body = json.dumps(event, separators=(",", ":"))
    sent_ms = int(datetime.strptime(event["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
                  .replace(tzinfo=timezone.utc).timestamp() * 1000) + 40
    return {
        "messageId": str(uuid.uuid5(NAMESPACE, "msg/" + event["id"])),
        "receiptHandle": "AQEB" + hashlib.sha256(("rh/" + event["id"]).encode()).hexdigest() + "==",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent_ms),
            "SenderId": "AROAEXAMPLEROLEID1234:storehook-AppStoreFunction",
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 25),
            "SequenceNumber": str(18_895_034_213_070_196_000 + index * 256),
            "MessageGroupId": event["subscription"]["id"] if event.get("subscription") else event["id"],
            "MessageDeduplicationId": event["id"],
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }


def dispatcher_event() -> dict:
    renewed = storehook_event(FIXTURES / "apple_001_DID_RENEW.json", "SUBSCRIPTION_RENEWED", "ACTIVE", {})
    expired = storehook_event(FIXTURES / "apple_009_EXPIRED_VOLUNTARY.json", "SUBSCRIPTION_EXPIRED", "EXPIRED",
                              {"reason": "VOLUNTARY"})
    return {"Records": [sqs_record(renewed, 0, 1), sqs_record(expired, 1, 1)]}


def render(obj: dict) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def wanted() -> dict[Path, str]:
    fixtures = sorted(FIXTURES.glob("*.json"))
    if not fixtures:
        sys.exit(f"gen_events: no fixtures in {FIXTURES}")
    files = {EVENTS / f"appstore-{event_name(f)}.json": render(http_event(f)) for f in fixtures}
    files[EVENTS / "dispatcher-sqs.json"] = render(dispatcher_event())
    return files


def main() -> int:
    check = "--check" in sys.argv[1:]
    files = wanted()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if check:
        for p in stale:
            print(f"gen_events: {p.relative_to(ROOT)} is out of date; run python3 scripts/gen_events.py",
                  file=sys.stderr)
        return 1 if stale else 0
    EVENTS.mkdir(exist_ok=True)
    for p in stale:
        p.write_text(files[p])
    print(f"gen_events: {len(files)} events, {len(stale)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
