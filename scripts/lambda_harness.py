#!/usr/bin/env python3
"""Runs the BUILT Lambda binaries (`bootstrap`, as `sam build` / cargo-lambda made them) against a
loopback Lambda Runtime API emulator and a local AWS emulator (moto), invokes every sample in
events/ and asserts each answer, and measures each function's footprint:

- zip size of its deployment package (bootstrap deflated, as sam deploy uploads it),
- init: from exec to the first `GET /runtime/invocation/next` (configuration, SDK clients, TLS
  setup; no secret reads: secrets are given inline here),
- warm invoke: the handler's duration for one sample (event handed out -> response posted),
  median and p99 over repeated invokes,
- peak RSS (VmHWM) after all invokes.

    .venv/bin/python scripts/lambda_harness.py [--build-dir .aws-sam/build] [--repeat 50]
        [--json target/lambda-footprint.json]

Needs moto_server and boto3 (the test venv: scripts/test.sh). No network beyond loopback: the
functions get HTTPS_PROXY pointing at a closed loopback port, so anything that would leave the
machine (the Play Developer API, Amazon's certificate host) fails fast with the store's 503
answer, which is what the samples that need a store API assert. Exit status 1 when any answer
is not the expected one.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
GOALS = {"zip_mb": 8.0, "init_ms": 30.0, "rss_mb": 40.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ Runtime API emulator
class RuntimeApi:
    """The Lambda Runtime API (2018-06-01) on loopback, for one function process."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.results: dict[str, tuple[str, object, float]] = {}
        self.handed: dict[str, float] = {}
        self.done: dict[str, threading.Event] = {}
        self.first_next: float | None = None
        self.init_error: str | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self._reply(404)
                if api.first_next is None:
                    api.first_next = time.perf_counter()
                rid, event = api.events.get()
                body = json.dumps(event).encode()
                api.handed[rid] = time.perf_counter()
                self._reply(200, body, {
                    "content-type": "application/json",
                    "lambda-runtime-aws-request-id": rid,
                    "lambda-runtime-deadline-ms": str(int(time.time() * 1000) + 60_000),
                    "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:123456789012:function:storehook",
                    "lambda-runtime-trace-id": "Root=1-00000000-000000000000000000000000",
                })

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("/")
                if self.path.endswith("/init/error"):
                    api.init_error = body.decode(errors="replace")
                    return self._reply(202, b"{}")
                if len(parts) >= 2 and parts[-1] in ("response", "error"):
                    rid = parts[-2]
                    try:
                        value = json.loads(body) if body else None
                    except ValueError:
                        value = body.decode(errors="replace")
                    api.results[rid] = (parts[-1], value, time.perf_counter())
                    api.done.setdefault(rid, threading.Event()).set()
                    return self._reply(202, b"{}")
                return self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The function is killed with a `next` outstanding: not an error worth a traceback.
        self.server.handle_error = lambda request, client_address: None
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: object, timeout: float = 30.0) -> tuple[str, object, float]:
        rid = str(uuid.uuid4())
        self.done[rid] = threading.Event()
        self.events.put((rid, event))
        if not self.done[rid].wait(timeout):
            raise TimeoutError("no answer within the timeout")
        kind, value, at = self.results[rid]
        return kind, value, (at - self.handed[rid]) * 1000.0

    def close(self) -> None:
        self.server.shutdown()


# ------------------------------------------------------------------ a webhook receiver
class Receiver:
    def __init__(self) -> None:
        self.count = 0
        rx = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                rx.count += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ------------------------------------------------------------------ moto
def start_moto(venv_bin: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(ROOT / "target" / "lambda-harness-moto.log", "w")
    p = subprocess.Popen([str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                         stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p, endpoint
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("moto_server did not start")


def provision(endpoint: str) -> dict:
    import boto3

    c = dict(endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id="test", aws_secret_access_key="test")
    sqs = boto3.client("sqs", **c)
    dlq = sqs.create_queue(QueueName="harness-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName="harness.fifo", Attributes={
        "FifoQueue": "true", "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 14})})["QueueUrl"]
    ddb = boto3.client("dynamodb", **c)
    ddb.create_table(
        TableName="harness", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": t}
                              for k, t in (("pk", "S"), ("sk", "S"), ("due_shard", "S"), ("due_at", "N"))],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "due",
            "KeySchema": [{"AttributeName": "due_shard", "KeyType": "HASH"},
                          {"AttributeName": "due_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["state"]}}])
    return {"queue": q, "dlq": dlq, "table": "harness", "sqs": sqs}


# ------------------------------------------------------------------ what each function gets
def play_service_account() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "harness", "private_key_id": "k1",
                       "private_key": pem, "client_email": "harness@harness.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"})


def jws_payload(body: str) -> dict:
    jws = json.loads(body)["signedPayload"]
    part = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def cases(aws: dict, rx: Receiver) -> list[dict]:
    """Per function: its environment and (sample, check) pairs. A check returns None when the
    answer is the expected one, else why not."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    dead_tls = f"127.0.0.1:{free_port()}"

    def http_status(want: int, code: str | None = None):
        def check(kind, value):
            if kind != "response" or not isinstance(value, dict):
                return f"expected an HTTP answer, got {kind}: {value}"
            if value.get("statusCode") != want:
                return f"expected {want}, got {value.get('statusCode')}: {value.get('body')}"
            if code is not None:
                body = json.loads(value.get("body") or "{}")
                got = (body.get("error") or {}).get("code")
                if got != code:
                    return f"expected code {code}, got {got}"
            return None
        return check

    appstore = []
    for f in sorted(EVENTS.glob("appstore-*.json")):
        p = jws_payload(json.loads(f.read_text())["body"])
        data = p.get("data") or p.get("summary") or {}
        ok = data.get("bundleId") == "GeniusParentingAI" and data.get("environment") == "Sandbox"
        appstore.append((f.name, http_status(200) if ok else http_status(403, "wrong_app")))

    def dispatched(kind, value):
        if kind != "response" or not isinstance(value, dict):
            return f"expected a batch response, got {kind}: {value}"
        if value.get("batchItemFailures"):
            return f"failures: {value['batchItemFailures']}"
        if rx.count < 2:
            return f"the webhook got {rx.count} deliveries, expected 2"
        return None

    def swept(kind, value):
        if kind != "response":
            return f"expected a report, got {kind}: {value}"
        return None

    base = {"QUEUE_URL": aws["queue"], "TABLE_NAME": aws["table"]}
    huawei_key = (ROOT / "tests/fixtures/huawei/public_key.txt").read_text().strip()
    return [
        {"function": "AppStoreFunction", "warm": "appstore-did-renew.json",
         "metrics": ["notifications_accepted_total", "notifications_refused_total", "events_total"],
         "env": {**base, "APPLE_BUNDLE_ID": "GeniusParentingAI", "APPLE_ENVIRONMENTS": "Sandbox"},
         "samples": appstore},
        {"function": "PlayStoreFunction", "warm": "playstore-test.json",
         "metrics": ["notifications_accepted_total", "notifications_refused_total"],
         "env": {**base, "PLAY_PACKAGE_NAMES": ",".join([
                     "com.prometheuspoker.battle", "com.edufox", "com.billionfaces.casttree",
                     "com.anonymous.ipush"]),
                 "PLAY_PUSH_TOKEN": "local-push-token-change-me",
                 "PLAY_SERVICE_ACCOUNT_JSON": play_service_account(),
                 "PLAY_OAUTH_TOKEN_URL": f"{dead}/token", "PLAY_API_BASE_URL": dead,
                 "PLAY_JWKS_URL": f"{dead}/jwks"},
         # TEST needs no API; the others ask the Play Developer API, which is not reachable here.
         "samples": [("playstore-test.json", http_status(200)),
                     ("playstore-subscription-renewed.json", http_status(503, "play_api_unavailable")),
                     ("playstore-subscription-canceled.json", http_status(503, "play_api_unavailable")),
                     ("playstore-voided-purchase.json", http_status(503, "play_api_unavailable"))]},
        {"function": "HuaweiFunction", "warm": "huawei-v2-renewal-recurring.json",
         "metrics": ["notifications_accepted_total", "events_total"],
         "env": {**base, "HUAWEI_APP_IDS": "101234567", "HUAWEI_PUBLIC_KEY": huawei_key},
         "samples": [("huawei-v1-initial-buy.json", http_status(200)),
                     ("huawei-v2-renewal-recurring.json", http_status(200))]},
        {"function": "AmazonFunction", "warm": "amazon-subscription-purchased.json",
         "metrics": ["notifications_refused_total"],
         "env": {**base, "AMAZON_APP_PACKAGES": "com.example.fire",
                 "AMAZON_TOPIC_ARNS": "arn:aws:sns:us-east-1:033616359524:LT0XA",
                 "AMAZON_RVS_SHARED_SECRET": "harness-secret", "AMAZON_RVS_URL": dead,
                 "AMAZON_SNS_CERT_HOSTS": dead_tls},
         # Signed by the committed test PKI. Their certificate URL (not part of what SNS signs)
         # is pointed at a closed loopback port: the download fails, the answer is 503.
         "rewrite": lambda e: amazon_cert_url(e, f"https://{dead_tls}/SimpleNotificationService-x.pem"),
         "samples": [(f.name, http_status(503, "certificate_unavailable"))
                     for f in sorted(EVENTS.glob("amazon-*.json"))]},
        {"function": "DispatcherFunction", "warm": None,
         "metrics": ["deliveries_total", "delivery_latency_ms"],
         "env": {**base, "DLQ_URL": aws["dlq"], "WEBHOOK_URL": rx.url,
                 "WEBHOOK_SECRET": "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"},
         "samples": [("dispatcher-sqs.json", dispatched)]},
        {"function": "SweeperFunction", "warm": "sweeper-schedule.json",
         "env": dict(base),
         "samples": [("sweeper-schedule.json", swept)]},
    ]


def amazon_cert_url(event: dict, url: str) -> dict:
    body = json.loads(event["body"])
    body["SigningCertURL"] = url
    return {**event, "body": json.dumps(body)}


def emf_metrics(log: Path) -> tuple[set[str], list[str]]:
    """The metric names of the CloudWatch EMF lines the function printed, and the bad lines."""
    names, bad = set(), []
    for line in log.read_text(errors="replace").splitlines():
        if '"_aws"' not in line:
            continue
        try:
            v = json.loads(line)
            d = v["_aws"]["CloudWatchMetrics"][0]
            assert d["Namespace"] == "storehook"
            for m in d["Metrics"]:
                assert m["Name"] in v, m["Name"]
                names.add(m["Name"])
            for dims in d["Dimensions"]:
                for k in dims:
                    assert k in v, k
        except (ValueError, KeyError, IndexError, AssertionError) as e:
            bad.append(f"{e}: {line[:200]}")
    return names, bad


def zip_size(binary: Path) -> int:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(binary, "bootstrap")
    return len(buf.getvalue())


def peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_function(build: Path, case: dict, endpoint: str, repeat: int) -> dict:
    binary = build / case["function"] / "bootstrap"
    out = {"function": case["function"], "failures": []}
    if not binary.is_file():
        out["failures"].append(f"{binary} is missing")
        return out
    out["zip_bytes"] = zip_size(binary)
    api = RuntimeApi()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": case["function"],
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{case['function']}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "harness",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "WARN",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
        # Nothing leaves the machine: any HTTPS request outside loopback fails at once.
        "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}", "NO_PROXY": "127.0.0.1,localhost",
        **case["env"],
    }
    log_path = ROOT / "target" / f"lambda-harness-{case['function']}.log"
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while api.first_next is None and api.init_error is None and proc.poll() is None:
            if time.time() > deadline:
                out["failures"].append("no first `next` within 20 s")
                return out
            time.sleep(0.001)
        if api.first_next is None:
            out["failures"].append(f"init failed: {api.init_error or f'exit {proc.returncode}'}")
            return out
        out["init_ms"] = (api.first_next - t0) * 1000.0
        rewrite = case.get("rewrite", lambda e: e)
        for name, check in case["samples"]:
            event = rewrite(json.loads((EVENTS / name).read_text()))
            try:
                kind, value, ms = api.invoke(event)
            except TimeoutError as e:
                out["failures"].append(f"{name}: {e}")
                continue
            why = check(kind, value)
            out.setdefault("samples", []).append({"sample": name, "ok": why is None, "ms": round(ms, 2)})
            if why:
                out["failures"].append(f"{name}: {why}")
        if case["warm"] and repeat > 0:
            event = rewrite(json.loads((EVENTS / case["warm"]).read_text()))
            times = []
            for _ in range(repeat):
                _, _, ms = api.invoke(event)
                times.append(ms)
            times.sort()
            out["warm_sample"] = case["warm"]
            out["warm_median_ms"] = statistics.median(times)
            out["warm_p99_ms"] = times[min(len(times) - 1, int(len(times) * 0.99))]
        out["peak_rss_kb"] = peak_rss_kb(proc.pid)
        return out
    finally:
        proc.kill()
        proc.wait()
        api.close()
        log.close()
        # Every invocation flushes its metrics as CloudWatch EMF lines on standard output.
        names, bad = emf_metrics(log_path)
        out["emf_metrics"] = sorted(names)
        for b in bad:
            out["failures"].append(f"a malformed EMF line: {b}")
        for m in case.get("metrics", []):
            if m not in names:
                out["failures"].append(f"no CloudWatch EMF line for {m} (log: {log_path.relative_to(ROOT)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(ROOT / ".aws-sam" / "build"))
    ap.add_argument("--repeat", type=int, default=50, help="warm invokes per function (0: none)")
    ap.add_argument("--json", default=str(ROOT / "target" / "lambda-footprint.json"))
    ap.add_argument("--only", action="append", help="run only this function (repeatable)")
    args = ap.parse_args()
    (ROOT / "target").mkdir(exist_ok=True)
    venv_bin = Path(sys.executable).parent
    moto, endpoint = start_moto(venv_bin)
    try:
        aws = provision(endpoint)
        rx = Receiver()
        results = [run_function(Path(args.build_dir), c, endpoint, args.repeat) for c in cases(aws, rx)
                   if not args.only or c["function"] in args.only]
    finally:
        moto.kill()
        moto.wait()
    print(f"{'function':<20} {'zip MB':>7} {'init ms':>8} {'warm p50 ms':>12} {'warm p99 ms':>12} {'peak RSS MB':>12}  samples")
    failed = False
    for r in results:
        ok = sum(1 for s in r.get("samples", []) if s["ok"])
        n = len(r.get("samples", []))
        fmt = lambda v, d=2: f"{v:.{d}f}" if isinstance(v, (int, float)) else "-"
        print(f"{r['function']:<20} {fmt(r.get('zip_bytes', 0) / 1e6):>7} {fmt(r.get('init_ms'), 1):>8} "
              f"{fmt(r.get('warm_median_ms')):>12} {fmt(r.get('warm_p99_ms')):>12} "
              f"{fmt(r.get('peak_rss_kb', 0) / 1024, 1):>12}  {ok}/{n} as expected")
        for f in r["failures"]:
            failed = True
            print(f"  FAIL {r['function']}: {f}")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"(written to {Path(args.json).relative_to(ROOT) if Path(args.json).is_relative_to(ROOT) else args.json})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
