#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/seed-* from the repository's
real and sample notifications (tests/fixtures, events/). Deterministic: run it
again after a fixture changes. The formats are those the targets' docs give."""
import base64, glob, hashlib, hmac, json, os, shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")
NOW_S = 1_740_787_200  # storehook_fuzz::NOW_MS / 1000


def b64url_json(seg):
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def body_of(path):
    b = json.load(open(path))["body"]
    return b if isinstance(b, str) else json.dumps(b, separators=(",", ":"))


for t in ["appstore", "playstore", "huawei", "sqs_event", "webhook_verify", "event_roundtrip"]:
    shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)

# appstore: raw real bodies (Apple root) and the same payloads re-signed (`S` mode).
for path in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/appstore/*.json"))):
    name = os.path.basename(path)[:-5]
    body = body_of(path)
    write("appstore", name, body)
    outer = b64url_json(json.loads(body)["signedPayload"].split(".")[1])
    parts = []
    data = outer.get("data") or {}
    for field, mark in (("signedTransactionInfo", "$TX"), ("signedRenewalInfo", "$RN")):
        if field in data:
            parts.append(json.dumps(b64url_json(data[field].split(".")[1]), separators=(",", ":")))
            data[field] = mark
    seed = b"S" + json.dumps(outer, separators=(",", ":")).encode()
    for p in parts:
        seed += b"\xff" + p.encode()
    write("appstore", "signed-" + name, seed)

# playstore: a signed claims token + a push body (real bodies: other packages; test/sample ones).
claims = {
    "aud": "https://hooks.example.com/playstore",
    "azp": "113774264463038321964",
    "email": "rtdn-push@example-project.iam.gserviceaccount.com",
    "email_verified": True,
    "exp": NOW_S + 3600,
    "iat": NOW_S,
    "iss": "https://accounts.google.com",
    "sub": "113774264463038321964",
}
token = "SIGN" + json.dumps(claims, separators=(",", ":"))
for path in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/playstore/*.json"))) + sorted(
    glob.glob(os.path.join(ROOT, "events/playstore-*.json"))
):
    name = os.path.basename(path)[:-5]
    body = body_of(path)
    write("playstore", name, token + "\n" + body)
    # the same push for the configured package
    push = json.loads(body)
    dev = json.loads(base64.b64decode(push["message"]["data"]))
    dev["packageName"] = "com.example.app"
    push["message"]["data"] = base64.b64encode(json.dumps(dev).encode()).decode()
    write("playstore", "pkg-" + name, token + "\n" + json.dumps(push, separators=(",", ":")))
write("playstore", "unsigned", "eyJhbGciOiJub25lIn0.e30.\n{}")

# huawei: the signed samples as they are, and their content re-signed (S, P, V modes).
for path in sorted(glob.glob(os.path.join(ROOT, "events/huawei-*.json"))):
    name = os.path.basename(path)[:-5]
    body = body_of(path)
    write("huawei", name, body)
    b = json.loads(body)
    signed = b.get("statusUpdateNotification") or b["subNotification"]["statusUpdateNotification"]
    for mode in "SPV":
        write("huawei", mode + "-" + name, mode + signed)
write(
    "huawei",
    "order",
    json.dumps({"version": "v2", "eventType": "ORDER", "notifyTime": NOW_S * 1000,
                "applicationId": "101234567",
                "orderNotification": {"version": "v2", "notificationType": 1,
                                      "purchaseToken": "tok", "productId": "p"}}),
)

# sqs_event / event_roundtrip: the queued events of the sample SQS batch.
events = [r["body"] for r in json.load(open(os.path.join(ROOT, "events/dispatcher-sqs.json")))["Records"]]
for i, e in enumerate(events):
    write("event_roundtrip", f"sqs-{i}", e)
    write("sqs_event", f"one-{i}", b"\x00" + e.encode())
write("sqs_event", "batch", b"\x00" + b"\x00".join(e.encode() for e in events))
write("sqs_event", "batch-500", b"\x01" + b"\x00".join(e.encode() for e in events))
write("sqs_event", "not-an-event", b"\x00{\"id\":1}\x00" + events[0].encode())

# webhook_verify: a correctly signed delivery at the target's now, and a stale one.
key = b"fuzz-webhook-key-0123456789abcdef"
for name, ts in (("valid", NOW_S), ("stale", NOW_S - 301)):
    body = events[0].encode()
    msg = f"evt_1.{ts}.".encode() + body
    sig = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    write("webhook_verify", name, f"evt_1\n{ts}\nv1a,xyz v1,{sig}\n".encode() + body)
