#!/usr/bin/env python3
"""Checks template.yaml for what cfn-lint cannot know.

1. Rules cfn-lint does not check (see docs/deploy.md and shared/src/provision.rs):
   FIFO event-source BatchSize <= 10, queue visibility timeout >= 6 x the consuming
   function's timeout (AWS guidance; >= 1 x is a hard requirement), retry steps <= 12h.
2. The template declares exactly the values storehook's code uses: the queue, DLQ and table
   attributes equal the `pub const`s of shared/src/provision.rs (which the provision tests
   create against moto), the parameter defaults equal the code's defaults (retry.rs,
   webhook/sender.rs, config/dispatcher.rs), and every function gets exactly the expected environment
   variables, each of which that function's code reads (a "NAME" literal in its main or the
   shared module it uses, e.g. functions/playstore/src + shared/src/stores/playstore).
3. Least privilege: each role grants exactly the expected actions on the expected resources,
   with exactly the expected IAM conditions (Play: only the LINK#GOOGLE_PLAY# items).
4. Every ingest function has its route on HttpApi, its endpoint output and an Errors alarm; the
   optional stores' resources (Google Play, Huawei) all carry that store's condition.

Usage: python scripts/check_template.py [template.yaml]   (needs cfn-lint, for its YAML decoder)
Exits 1 and lists every failure; prints "N passed, 0 failed" when all checks hold.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

try:
    from cfnlint.decode import cfn_yaml  # cfn-lint's YAML decoder understands !Ref, !GetAtt, ...
except ImportError:  # pragma: no cover
    sys.exit("check_template: cfn-lint is not installed (run via scripts/test.sh, which installs it)")

ROOT = Path(__file__).resolve().parent.parent
PROVISION_RS = ROOT / "shared" / "src" / "provision.rs"
RETRY_RS = ROOT / "shared" / "src" / "retry.rs"
WEBHOOK_RS = ROOT / "shared" / "src" / "webhook" / "sender.rs"
DISPATCH_CONFIG_RS = ROOT / "shared" / "src" / "config" / "dispatcher.rs"
PLAY_LINKS_DYNAMO_RS = ROOT / "shared" / "src" / "stores" / "playstore" / "links" / "dynamo.rs"

# function -> (cargo-lambda binary, where its code reads its environment: the names must appear
# there as "LITERALS"; test code lives outside these files: storehook-testkit, shared/tests).
FUNCTIONS = {
    "AppStoreFunction": ("appstore", ("functions/appstore/src/**/*.rs", "shared/src/stores/appstore/**/*.rs",
                                      "shared/src/fanout.rs")),
    "PlayStoreFunction": ("playstore", ("functions/playstore/src/**/*.rs", "shared/src/stores/playstore/**/*.rs",
                                        "shared/src/fanout.rs")),
    "HuaweiFunction": ("huawei", ("functions/huawei/src/**/*.rs", "shared/src/stores/huawei/**/*.rs",
                                  "shared/src/fanout.rs")),
    "AmazonFunction": ("amazon", ("functions/amazon/src/**/*.rs", "shared/src/stores/amazon/**/*.rs",
                                  "shared/src/fanout.rs")),
    "DispatcherFunction": ("dispatcher", ("functions/dispatcher/src/**/*.rs", "shared/src/config/dispatcher.rs",
                                          "shared/src/dispatch/**/*.rs", "shared/src/consumption.rs",
                                          "shared/src/fanout.rs",
                                          "shared/src/stores/appstore/**/*.rs")),
    "SweeperFunction": ("sweeper", ("functions/sweeper/src/**/*.rs", "shared/src/config/sweeper.rs",
                                    "shared/src/stores/**/*.rs")),
}

# The environment each function's code reads (shared/src/stores/*/config.rs, config/dispatcher.rs
# and the mains).
# RUST_LOG comes from Globals.
EXPECTED_ENV = {
    "AppStoreFunction": {
        "QUEUE_URL", "APPLE_BUNDLE_ID", "APPLE_APP_APPLE_ID", "APPLE_ENVIRONMENTS", "INCLUDE_RAW", "RUST_LOG",
        "WEBHOOK_ENDPOINTS",
    },
    "PlayStoreFunction": {
        "QUEUE_URL", "TABLE_NAME", "PLAY_PACKAGE_NAMES", "PLAY_PUSH_SERVICE_ACCOUNT", "PLAY_PUSH_AUDIENCE",
        "PLAY_PUSH_TOKEN", "PLAY_SERVICE_ACCOUNT_SECRET_ARN", "INCLUDE_RAW", "RUST_LOG", "WEBHOOK_ENDPOINTS",
    },
    "HuaweiFunction": {
        "QUEUE_URL", "TABLE_NAME", "HUAWEI_APP_IDS", "HUAWEI_PUBLIC_KEY", "HUAWEI_CLIENT_ID", "HUAWEI_CLIENT_SECRET_ARN",
        "HUAWEI_API_URL", "HUAWEI_ORDER_API_URL", "INCLUDE_RAW", "RUST_LOG", "WEBHOOK_ENDPOINTS",
    },
    "AmazonFunction": {
        "QUEUE_URL", "AMAZON_APP_PACKAGES", "AMAZON_TOPIC_ARNS", "AMAZON_RVS_SHARED_SECRET_ARN",
        "AMAZON_RVS_SANDBOX", "AMAZON_SNS_AUTO_CONFIRM", "INCLUDE_RAW", "RUST_LOG", "WEBHOOK_ENDPOINTS",
    },
    "DispatcherFunction": {
        "QUEUE_URL", "DLQ_URL", "TABLE_NAME", "WEBHOOK_URL", "WEBHOOK_SECRET_ARN", "WEBHOOK_TIMEOUT_MS",
        "RETRY_SCHEDULE", "HISTORY_TTL_DAYS", "RUST_LOG", "WEBHOOK_ENDPOINTS",
        # the refund defence (shared/src/consumption.rs) with the App Store Server API
        "APPLE_BUNDLE_ID", "APPLE_API_KEY_ID", "APPLE_API_ISSUER_ID", "APPLE_API_PRIVATE_KEY_SECRET_ARN",
        "REFUND_CONSUMPTION_DEFAULT", "REFUND_CUSTOMER_CONSENT", "REFUND_SAMPLE_CONTENT_PROVIDED",
    },
    "SweeperFunction": {
        "QUEUE_URL", "TABLE_NAME", "SWEEP_LEEWAY", "RUST_LOG",
        "APPLE_BUNDLE_ID", "APPLE_API_KEY_ID", "APPLE_API_ISSUER_ID", "APPLE_API_PRIVATE_KEY_SECRET_ARN",
        "PLAY_PACKAGE_NAMES", "PLAY_SERVICE_ACCOUNT_SECRET_ARN",
        "HUAWEI_APP_IDS", "HUAWEI_PUBLIC_KEY", "HUAWEI_CLIENT_ID", "HUAWEI_CLIENT_SECRET_ARN",
        "HUAWEI_API_URL", "HUAWEI_ORDER_API_URL",
        "AMAZON_RVS_SHARED_SECRET_ARN", "AMAZON_RVS_SANDBOX",
    },
}

# Ingest function -> (its HttpApi POST path, endpoint output, the template condition it and all its
# own resources carry: None = always deployed).
INGEST = {
    "AppStoreFunction": ("/appstore", "AppStoreEndpoint", None),
    "PlayStoreFunction": ("/playstore", "PlayStoreEndpoint", "HasPlay"),
    "HuaweiFunction": ("/huawei", "HuaweiEndpoint", "HasHuawei"),
    "AmazonFunction": ("/amazon", "AmazonEndpoint", "HasAmazon"),
}
# Resources that exist only with an optional store (their Condition).
CONDITIONAL_RESOURCES = {
    "PlayStoreLogGroup": "HasPlay", "PlayServiceAccountSecret": "HasPlay", "PlayStoreFunctionRole": "HasPlay",
    "PlayStoreFunction": "HasPlay", "PlayStoreErrorsAlarm": "HasPlay",
    "HuaweiLogGroup": "HasHuawei", "HuaweiFunctionRole": "HasHuawei", "HuaweiFunction": "HasHuawei",
    "HuaweiErrorsAlarm": "HasHuawei",
    "HuaweiClientSecretSecret": "HasHuaweiApi",  # only with HuaweiClientId + HuaweiClientSecret
    "AmazonLogGroup": "HasAmazon", "AmazonFunctionRole": "HasAmazon", "AmazonFunction": "HasAmazon",
    "AmazonErrorsAlarm": "HasAmazon",
    "AmazonRvsSharedSecretSecret": "HasAmazonRvsSecret",  # the rule requires it with AmazonAppPackages
}

# role -> {(action, resource logical id or the log group)}
EXPECTED_GRANTS = {
    "AppStoreFunctionRole": {
        ("logs:CreateLogStream", "AppStoreLogGroup"),
        ("logs:PutLogEvents", "AppStoreLogGroup"),
        ("sqs:SendMessage", "EventsQueue"),
    },
    "PlayStoreFunctionRole": {
        ("logs:CreateLogStream", "PlayStoreLogGroup"),
        ("logs:PutLogEvents", "PlayStoreLogGroup"),
        ("sqs:SendMessage", "EventsQueue"),
        ("secretsmanager:GetSecretValue", "PlayServiceAccountSecret"),
        ("dynamodb:GetItem", "Table"),  # only LINK#GOOGLE_PLAY# items: see expected_conditions()
        ("dynamodb:PutItem", "Table"),
    },
    "HuaweiFunctionRole": {
        ("logs:CreateLogStream", "HuaweiLogGroup"),
        ("logs:PutLogEvents", "HuaweiLogGroup"),
        ("sqs:SendMessage", "EventsQueue"),
        ("secretsmanager:GetSecretValue", "HuaweiClientSecretSecret"),  # !If HasHuaweiApi
        ("dynamodb:PutItem", "Table"),  # only the sweeper's newest-token items: see expected_conditions()
    },
    "AmazonFunctionRole": {
        ("logs:CreateLogStream", "AmazonLogGroup"),
        ("logs:PutLogEvents", "AmazonLogGroup"),
        ("sqs:SendMessage", "EventsQueue"),
        ("secretsmanager:GetSecretValue", "AmazonRvsSharedSecretSecret"),  # !If HasAmazonRvsSecret
    },
    "DispatcherFunctionRole": {
        ("logs:CreateLogStream", "DispatcherLogGroup"),
        ("logs:PutLogEvents", "DispatcherLogGroup"),
        ("sqs:ReceiveMessage", "EventsQueue"),
        ("sqs:DeleteMessage", "EventsQueue"),
        ("sqs:GetQueueAttributes", "EventsQueue"),
        ("sqs:ChangeMessageVisibility", "EventsQueue"),
        ("sqs:SendMessage", "EventsDeadLetterQueue"),
        ("dynamodb:GetItem", "Table"),
        ("dynamodb:PutItem", "Table"),
        ("dynamodb:UpdateItem", "Table"),
        ("dynamodb:Query", "Table"),
        ("dynamodb:ConditionCheckItem", "Table"),
        ("secretsmanager:GetSecretValue", "WebhookSecret"),
        # jobs on its own queue (deliveries to several endpoints, the refund defence)
        ("sqs:SendMessage", "EventsQueue"),
        # the refund defence's API key (!If HasAppleApi), the endpoints' secrets (!If HasEndpoints)
        ("secretsmanager:GetSecretValue", "AppleApiPrivateKeySecretArn"),
        ("secretsmanager:GetSecretValue", "secret:storehook-endpoint-*"),
    },
    "SweeperFunctionRole": {
        ("logs:CreateLogStream", "SweeperLogGroup"),
        ("logs:PutLogEvents", "SweeperLogGroup"),
        ("sqs:SendMessage", "EventsQueue"),
        ("dynamodb:Query", "Table/index/due"),  # the due index only
        ("dynamodb:UpdateItem", "Table"),  # only SUB# items: see expected_conditions()
        ("dynamodb:Query", "Table"),
        ("dynamodb:GetItem", "Table"),  # LINK#GOOGLE_PLAY# (tokens) and EVT# (delivery records) only
        ("dynamodb:PutItem", "Table"),  # LINK#GOOGLE_PLAY# only (the voided job's lineage links)
        ("secretsmanager:GetSecretValue", "AppleApiPrivateKeySecretArn"),  # !If HasAppleApi
        ("secretsmanager:GetSecretValue", "PlayServiceAccountSecret"),  # !If HasPlay
        ("secretsmanager:GetSecretValue", "HuaweiClientSecretSecret"),  # !If HasHuaweiApi
        ("secretsmanager:GetSecretValue", "AmazonRvsSharedSecretSecret"),  # !If HasAmazonRvsSecret
    },
}

EXPECTED_OUTPUTS = {"AppStoreEndpoint", "PlayStoreEndpoint", "HuaweiEndpoint", "AmazonEndpoint", "QueueUrl", "DeadLetterQueueUrl",
                    "TableName", "WebhookSecretArn"}


def expected_conditions() -> dict:
    """(role, action, resource) -> the IAM Condition its statement must carry (all others: none)."""
    prefix = require(rust_consts(PLAY_LINKS_DYNAMO_RS), "PK_PREFIX", PLAY_LINKS_DYNAMO_RS)
    links = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [prefix + "*"]}}
    latest_prefix = require(rust_consts(PLAY_LINKS_DYNAMO_RS), "LATEST_PK_PREFIX", PLAY_LINKS_DYNAMO_RS)
    latest = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [latest_prefix + "*"]}}
    subs = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SUB#*"]}}
    return {("PlayStoreFunctionRole", "dynamodb:GetItem", "Table"): links,
            ("PlayStoreFunctionRole", "dynamodb:PutItem", "Table"): links,
            ("HuaweiFunctionRole", "dynamodb:PutItem", "Table"): latest,
            ("SweeperFunctionRole", "dynamodb:UpdateItem", "Table"): subs,
            ("SweeperFunctionRole", "dynamodb:Query", "Table"): subs,
            ("SweeperFunctionRole", "dynamodb:GetItem", "Table"):
                {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LINK#GOOGLE_PLAY#*", "EVT#*"]}},
            ("SweeperFunctionRole", "dynamodb:PutItem", "Table"): links}

SQS_MAX_VISIBILITY_S = 43_200
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Checker:
    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)

    def equal(self, actual, expected, what: str) -> None:
        self.check(actual == expected, f"{what}: template has {actual!r}, expected {expected!r}")


def rust_consts(path: Path) -> dict:
    """`pub const NAME: type = literal;` lines of a Rust file, as Python values."""
    consts = {}
    pattern = re.compile(r"^pub const ([A-Z0-9_]+): ([^=]+?) = (.+);\s*$")
    for line in path.read_text().splitlines():
        m = pattern.match(line)
        if not m:
            continue
        name, ty, value = m.group(1), m.group(2).strip(), m.group(3).strip()
        if ty == "&str" and value.startswith('"') and value.endswith('"'):
            consts[name] = json.loads(value)
        elif ty == "bool" and value in ("true", "false"):
            consts[name] = value == "true"
        elif re.fullmatch(r"[ui](8|16|32|64|size)", ty) and re.fullmatch(r"[0-9_]+", value):
            consts[name] = int(value.replace("_", ""))
    return consts


def duration_const_ms(path: Path, name: str) -> int | None:
    """`pub const NAME: Duration = Duration::from_secs(N)` (or from_millis) in milliseconds."""
    m = re.search(rf"pub const {name}: Duration = Duration::from_(secs|millis)\(([0-9_]+)\);", path.read_text())
    if not m:
        sys.exit(f"check_template: {path.relative_to(ROOT)} has no `pub const {name}: Duration = ...` literal")
    n = int(m.group(2).replace("_", ""))
    return n * 1000 if m.group(1) == "secs" else n


def require(consts: dict, name: str, source: Path):
    if name not in consts:
        sys.exit(f"check_template: {source.relative_to(ROOT)} has no `pub const {name}` literal")
    return consts[name]


def index_of(value):
    """{'Fn::Sub': '${X.Arn}/index/NAME'} -> 'X/index/NAME' (a grant on a table's index)."""
    sub = value.get("Fn::Sub") if isinstance(value, dict) else None
    m = re.fullmatch(r"\$\{([A-Za-z0-9]+)\.Arn\}/index/([A-Za-z0-9_.-]+)", sub) if isinstance(sub, str) else None
    return f"{m.group(1)}/index/{m.group(2)}" if m else None


def secret_prefix(value):
    """{'Fn::Sub': 'arn:${AWS::Partition}:secretsmanager:...:secret:NAME-*'} -> 'secret:NAME-*' (a grant on
    the secrets whose name starts with NAME-, e.g. the endpoints' secrets)."""
    sub = value.get("Fn::Sub") if isinstance(value, dict) else None
    m = re.fullmatch(r"arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                     r"secret:([a-z0-9-]+-)\*", sub) if isinstance(sub, str) else None
    return f"secret:{m.group(1)}*" if m else None


def ref(value):
    """The logical id of {'Ref': X} or {'Fn::GetAtt': [X, attr]} / 'X.attr'."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def statements(value, condition=None):
    """(statement, template condition or None) of a policy's Statement list, both sides of an Fn::If."""
    items = value if isinstance(value, list) else [value]
    for st in items:
        if isinstance(st, dict) and list(st) == ["Fn::If"]:
            cond, yes, no = st["Fn::If"]
            for branch in (yes, no):
                if branch != {"Ref": "AWS::NoValue"}:
                    yield from statements(branch, cond)
        else:
            yield st, condition


def plain(value):
    """cfn-lint's decoded YAML (str/dict/list subclasses with line marks) as plain Python values."""
    return json.loads(json.dumps(value))


def param_default(template: dict, value):
    """A literal, or the Default of a parameter it references."""
    name = ref(value)
    if name and name in template.get("Parameters", {}):
        return template["Parameters"][name].get("Default")
    return value


def as_int(value) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value).lower())


def schedule_seconds(schedule: str) -> list[float]:
    out = []
    for step in re.split(r"[,\s]+", schedule.strip()):
        m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)", step)
        if not m:
            raise ValueError(step)
        out.append(int(m.group(1)) * UNIT_S[m.group(2)])
    return out


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template = cfn_yaml.load(str(path))
    resources = template["Resources"]
    params = template.get("Parameters", {})
    globals_fn = template.get("Globals", {}).get("Function", {})
    p = rust_consts(PROVISION_RS)
    def code_of(globs) -> str:
        files = {f for g in globs for f in ROOT.glob(g)}
        return "\n".join(f.read_text(errors="replace") for f in sorted(files))
    bins = set(re.findall(r'^name = "([^"]+)"', "\n".join(
        f.read_text() for f in ROOT.glob("functions/*/Cargo.toml")), re.M))
    r = rust_consts(RETRY_RS) if RETRY_RS.exists() else {}
    c = Checker()

    def props(logical_id: str) -> dict:
        res = resources.get(logical_id)
        c.check(res is not None, f"resource {logical_id} is missing")
        return (res or {}).get("Properties", {})

    def fn_prop(fn: dict, key: str):
        return fn.get(key, globals_fn.get(key))

    # ---- queues: attributes == provision.rs
    queue, dlq = props("EventsQueue"), props("EventsDeadLetterQueue")
    for q, label, retention in ((queue, "EventsQueue", "QUEUE_MESSAGE_RETENTION_S"),
                                (dlq, "EventsDeadLetterQueue", "DLQ_MESSAGE_RETENTION_S")):
        c.equal(as_bool(q.get("FifoQueue")), require(p, "QUEUE_FIFO", PROVISION_RS), f"{label}.FifoQueue")
        c.equal(as_bool(q.get("ContentBasedDeduplication")),
                require(p, "QUEUE_CONTENT_BASED_DEDUPLICATION", PROVISION_RS), f"{label}.ContentBasedDeduplication")
        c.equal(as_int(q.get("MessageRetentionPeriod")), require(p, retention, PROVISION_RS),
                f"{label}.MessageRetentionPeriod")
        c.equal(as_bool(q.get("SqsManagedSseEnabled")), require(p, "QUEUE_SQS_MANAGED_SSE", PROVISION_RS),
                f"{label}.SqsManagedSseEnabled")
    c.equal(queue.get("DeduplicationScope"), require(p, "QUEUE_DEDUPLICATION_SCOPE", PROVISION_RS),
            "EventsQueue.DeduplicationScope")
    c.equal(queue.get("FifoThroughputLimit"), require(p, "QUEUE_FIFO_THROUGHPUT_LIMIT", PROVISION_RS),
            "EventsQueue.FifoThroughputLimit")
    visibility = as_int(queue.get("VisibilityTimeout"))
    c.equal(visibility, require(p, "QUEUE_VISIBILITY_TIMEOUT_S", PROVISION_RS), "EventsQueue.VisibilityTimeout")
    c.check("RedrivePolicy" not in dlq and "DeduplicationScope" not in dlq,
            "EventsDeadLetterQueue must declare only FIFO, dedup, retention and SSE (as provision.rs creates it)")
    redrive = queue.get("RedrivePolicy", {})
    c.equal(ref(redrive.get("deadLetterTargetArn")), "EventsDeadLetterQueue",
            "EventsQueue.RedrivePolicy.deadLetterTargetArn")
    max_receive = as_int(param_default(template, redrive.get("maxReceiveCount")))
    c.equal(max_receive, require(p, "DEFAULT_MAX_RECEIVE_COUNT", PROVISION_RS),
            "EventsQueue.RedrivePolicy.maxReceiveCount (default)")

    # ---- table: attributes == provision.rs
    table = props("Table")
    pk, sk = require(p, "TABLE_PARTITION_KEY", PROVISION_RS), require(p, "TABLE_SORT_KEY", PROVISION_RS)
    c.equal(table.get("BillingMode"), require(p, "TABLE_BILLING_MODE", PROVISION_RS), "Table.BillingMode")
    due_shard = require(p, "TABLE_DUE_SHARD_ATTRIBUTE", PROVISION_RS)
    due_at = require(p, "TABLE_DUE_AT_ATTRIBUTE", PROVISION_RS)
    c.equal(sorted((a["AttributeName"], a["AttributeType"]) for a in table.get("AttributeDefinitions", [])),
            sorted([(pk, "S"), (sk, "S"), (due_shard, "S"), (due_at, "N")]), "Table.AttributeDefinitions")
    c.equal([(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])],
            [(pk, "HASH"), (sk, "RANGE")], "Table.KeySchema")
    ttl = table.get("TimeToLiveSpecification", {})
    c.equal((ttl.get("AttributeName"), as_bool(ttl.get("Enabled"))),
            (require(p, "TABLE_TTL_ATTRIBUTE", PROVISION_RS), True), "Table.TimeToLiveSpecification")
    c.equal(as_bool(table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")),
            require(p, "TABLE_POINT_IN_TIME_RECOVERY", PROVISION_RS), "Table.PointInTimeRecoverySpecification")
    c.equal(as_bool(table.get("SSESpecification", {}).get("SSEEnabled")),
            require(p, "TABLE_SSE_ENABLED", PROVISION_RS), "Table.SSESpecification.SSEEnabled")
    c.check(not table.get("LocalSecondaryIndexes"), "Table declares indexes that provision.rs does not create")
    gsis = table.get("GlobalSecondaryIndexes", [])
    c.equal([g.get("IndexName") for g in gsis], [require(p, "TABLE_DUE_INDEX", PROVISION_RS)],
            "Table.GlobalSecondaryIndexes (only the due index)")
    for g in gsis:
        c.equal([(k["AttributeName"], k["KeyType"]) for k in g.get("KeySchema", [])],
                [(due_shard, "HASH"), (due_at, "RANGE")], "Table.GlobalSecondaryIndexes[due].KeySchema")
        proj = g.get("Projection", {})
        c.equal((proj.get("ProjectionType"), proj.get("NonKeyAttributes")),
                ("INCLUDE", [require(p, "TABLE_DUE_PROJECTED_ATTRIBUTE", PROVISION_RS)]),
                "Table.GlobalSecondaryIndexes[due].Projection")

    # ---- webhook secret: valid base64 of the expected length
    gen = props("WebhookSecret").get("GenerateSecretString", {})
    c.equal(as_int(gen.get("PasswordLength")), require(p, "WEBHOOK_SECRET_LENGTH", PROVISION_RS),
            "WebhookSecret.GenerateSecretString.PasswordLength")
    c.equal(as_bool(gen.get("ExcludePunctuation")), True, "WebhookSecret.GenerateSecretString.ExcludePunctuation")
    c.check(as_int(gen.get("PasswordLength")) is not None and as_int(gen.get("PasswordLength")) % 4 == 0,
            "WebhookSecret length must be a multiple of 4 to be unpadded-safe base64")

    # ---- every SQS event source: the rules cfn-lint misses
    sqs_sources = 0
    for fn_id, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        fn = res.get("Properties", {})
        timeout = as_int(fn_prop(fn, "Timeout") or 3)
        for ev_id, ev in (fn.get("Events") or {}).items():
            if ev.get("Type") != "SQS":
                continue
            sqs_sources += 1
            where = f"{fn_id}.Events.{ev_id}"
            q_id = ref(ev.get("Properties", {}).get("Queue"))
            q_props = resources.get(q_id, {}).get("Properties", {})
            c.check(q_id in resources, f"{where}: Queue must !GetAtt a queue of this template")
            fifo = as_bool(q_props.get("FifoQueue")) is True
            batch = as_int(param_default(template, ev["Properties"].get("BatchSize", 10)))
            c.check(batch is not None and 1 <= batch <= (10 if fifo else 10_000),
                    f"{where}: BatchSize {batch} exceeds the {'FIFO ' if fifo else ''}limit")
            if fifo:
                c.check("MaximumBatchingWindowInSeconds" not in ev["Properties"],
                        f"{where}: FIFO event sources do not support MaximumBatchingWindowInSeconds")
            c.check("ReportBatchItemFailures" in (ev["Properties"].get("FunctionResponseTypes") or []),
                    f"{where}: FunctionResponseTypes must include ReportBatchItemFailures")
            vis = as_int(q_props.get("VisibilityTimeout", 30))
            c.check(vis is not None and timeout is not None and vis >= timeout,
                    f"{where}: {q_id}.VisibilityTimeout {vis} < {fn_id} Timeout {timeout} (AWS rejects this)")
            c.check(vis is not None and timeout is not None and vis >= 6 * timeout,
                    f"{where}: {q_id}.VisibilityTimeout {vis} < 6 x {fn_id} Timeout {timeout}")
            c.check(vis is not None and vis <= SQS_MAX_VISIBILITY_S, f"{q_id}.VisibilityTimeout {vis} > 12h")
            if fn_id == "DispatcherFunction":
                c.equal(timeout, require(p, "DISPATCHER_TIMEOUT_S", PROVISION_RS), "DispatcherFunction.Timeout")
                c.equal(batch, require(p, "DISPATCHER_BATCH_SIZE", PROVISION_RS), "DispatcherFunction SQS BatchSize")
            c.check(fn.get("ReservedConcurrentExecutions") is None,
                    f"{fn_id}: reserved concurrency throttles SQS batches into extra receives; use ScalingConfig")
    c.check(sqs_sources >= 1, "no SQS event source found")

    # ---- defaults == the code's defaults
    schedule = params.get("RetrySchedule", {}).get("Default", "")
    try:
        steps = schedule_seconds(schedule)
        c.check(all(0 < s <= SQS_MAX_VISIBILITY_S for s in steps), f"RetrySchedule {schedule!r}: a step is 0 or > 12h")
        c.equal(max_receive, len(steps) + 1, "MaxReceiveCount default vs RetrySchedule default (attempts = steps + 1)")
    except ValueError as e:
        c.check(False, f"RetrySchedule default {schedule!r} has an invalid step {e}")
    pattern = params.get("RetrySchedule", {}).get("AllowedPattern")
    c.check(pattern is None or re.fullmatch(pattern, schedule) is not None,
            "RetrySchedule default does not match its own AllowedPattern")
    if r:
        c.equal(schedule, require(r, "DEFAULT_RETRY_SCHEDULE", RETRY_RS), "RetrySchedule default (retry.rs)")
        c.equal(max_receive, require(r, "DEFAULT_MAX_ATTEMPTS", RETRY_RS), "MaxReceiveCount default (retry.rs)")
    else:
        print("check_template: note: shared/src/retry.rs not found, retry defaults not compared")
    webhook_default_ms = duration_const_ms(WEBHOOK_RS, "DEFAULT_TIMEOUT")
    c.equal(as_int(params.get("WebhookTimeoutMs", {}).get("Default")), webhook_default_ms,
            "WebhookTimeoutMs default (webhook.rs DEFAULT_TIMEOUT)")
    if DISPATCH_CONFIG_RS.exists():
        dc = rust_consts(DISPATCH_CONFIG_RS)
        c.equal(as_int(params.get("HistoryTtlDays", {}).get("Default")),
                require(dc, "DEFAULT_HISTORY_TTL_DAYS", DISPATCH_CONFIG_RS), "HistoryTtlDays default")
    leeway_ms = duration_const_ms(ROOT / "shared/src/sweep/sweeper.rs", "DEFAULT_LEEWAY")
    leeway = str(params.get("SweepLeeway", {}).get("Default", ""))
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)?", leeway)
    c.check(m is not None and int(m.group(1)) * UNIT_S[m.group(2) or "s"] * 1000 == leeway_ms,
            f"SweepLeeway default {leeway!r} != sweep/sweeper.rs DEFAULT_LEEWAY ({leeway_ms} ms)")
    c.check((as_int(params.get("HistoryTtlDays", {}).get("MaxValue")) or 10**9) <= 36_500,
            "HistoryTtlDays MaxValue must be <= 36500 (the dispatcher rejects more)")
    max_webhook_ms = as_int(params.get("WebhookTimeoutMs", {}).get("MaxValue"))
    disp_timeout = as_int(fn_prop(props("DispatcherFunction"), "Timeout"))
    disp_batch = require(p, "DISPATCHER_BATCH_SIZE", PROVISION_RS)
    c.check(max_webhook_ms is not None and disp_timeout is not None
            and max_webhook_ms * disp_batch <= disp_timeout * 1000,
            f"WebhookTimeoutMs MaxValue {max_webhook_ms} x BatchSize {disp_batch} must fit the dispatcher "
            f"timeout {disp_timeout}s (one subscription's batch is delivered sequentially)")
    # App Store environments: secure default (sandbox purchases are free but Apple-signed), and
    # every allowed value spelled exactly as Apple does (stores/appstore/config.rs refuses anything else).
    apple_envs = params.get("AppleEnvironments", {})
    c.equal(apple_envs.get("Default"), "Production", "AppleEnvironments default (Sandbox is an explicit choice)")
    for value in apple_envs.get("AllowedValues", []):
        c.check(all(item in ("Production", "Sandbox") for item in str(value).split(",")),
                f"AppleEnvironments allowed value {value!r} is not spelled as Apple does")
    arch = params.get("Architecture", {})
    c.equal(sorted(arch.get("AllowedValues", [])), ["arm64", "x86_64"], "Architecture AllowedValues")

    # ---- functions: build method, binary, environment
    for fn_id, (binary, code_globs) in FUNCTIONS.items():
        res = resources.get(fn_id, {})
        c.check(res.get("Type") == "AWS::Serverless::Function", f"{fn_id} must be an AWS::Serverless::Function")
        meta = res.get("Metadata", {})
        c.equal(meta.get("BuildMethod"), "rust-cargolambda", f"{fn_id} Metadata.BuildMethod")
        c.equal(meta.get("BuildProperties", {}).get("Binary"), binary, f"{fn_id} BuildProperties.Binary")
        c.check(binary in bins, f"{fn_id}: no [[bin]] name = \"{binary}\" in functions/*/Cargo.toml")
        code = code_of(code_globs)
        fn = res.get("Properties", {})
        c.equal(fn_prop(fn, "Runtime"), "provided.al2023", f"{fn_id} Runtime")
        c.equal(fn_prop(fn, "Handler"), "bootstrap", f"{fn_id} Handler")
        env = set((fn.get("Environment", {}).get("Variables") or {}).keys())
        env |= set((globals_fn.get("Environment", {}).get("Variables") or {}).keys())
        c.equal(sorted(env), sorted(EXPECTED_ENV[fn_id]), f"{fn_id} environment variable names")
        c.equal(ref(fn.get("Role")), f"{fn_id}Role", f"{fn_id} Role (explicit, least privilege)")
        for name in sorted(env - {"RUST_LOG"}):
            c.check(f'"{name}"' in code, f'{fn_id}: environment variable {name} is read nowhere in its code '
                                         f'(no "{name}" literal in {", ".join(code_globs)})')
        include_raw = (fn.get("Environment", {}).get("Variables") or {}).get("INCLUDE_RAW")
        if include_raw is not None:
            c.equal(ref(include_raw), "IncludeRaw", f"{fn_id} INCLUDE_RAW (one IncludeRaw for all stores)")
    c.equal(str(params.get("IncludeRaw", {}).get("Default")).lower(), "false", "INCLUDE_RAW default")

    # ---- least privilege
    iam_conditions = expected_conditions()
    for role_id, expected in EXPECTED_GRANTS.items():
        grants, conditions = set(), {}
        role_condition = resources.get(role_id, {}).get("Condition")
        for policy in props(role_id).get("Policies", []):
            for st, if_condition in statements(policy.get("PolicyDocument", {}).get("Statement", [])):
                c.check(st.get("Effect") == "Allow" and "NotAction" not in st and "NotResource" not in st,
                        f"{role_id}: only plain Allow statements expected")
                actions = st.get("Action", [])
                actions = [actions] if isinstance(actions, str) else actions
                resources_ = st.get("Resource", [])
                resources_ = resources_ if isinstance(resources_, list) else [resources_]
                for a in actions:
                    for res_ in resources_:
                        prefix = secret_prefix(res_)
                        target = ref(res_) or index_of(res_) or prefix or res_
                        c.check((target != "*" or prefix is not None) and "*" not in str(a),
                                f"{role_id}: wildcard in {a} on {res_}")
                        grants.add((a, target))
                        conditions[(role_id, a, target)] = plain(st.get("Condition"))
                        # A grant on a conditional resource must be as conditional as the resource.
                        need = resources.get(target, {}).get("Condition") if isinstance(target, str) else None
                        if need:
                            c.check(need in (role_condition, if_condition),
                                    f"{role_id}: the grant on {target} must be under its condition {need} "
                                    f"(role has {role_condition}, statement {if_condition})")
        c.equal(sorted(grants), sorted(expected), f"{role_id} grants")
        for key in sorted(conditions):
            c.equal(conditions[key], iam_conditions.get(key), f"{role_id}: IAM Condition of {key[1]} on {key[2]}")
        c.check(not props(role_id).get("ManagedPolicyArns"), f"{role_id}: managed policies are too broad")

    # ---- optional stores: everything of Google Play / Huawei carries the store's condition
    for res_id, cond in CONDITIONAL_RESOURCES.items():
        c.equal(resources.get(res_id, {}).get("Condition"), cond, f"{res_id} Condition")
    conditions_ = template.get("Conditions", {})
    for cond in sorted(set(CONDITIONAL_RESOURCES.values())):
        c.check(cond in conditions_, f"Conditions.{cond} is missing")

    # ---- ingest routes and endpoint outputs
    outputs = template.get("Outputs", {})
    for fn_id, (path_, output, cond) in INGEST.items():
        fn = resources.get(fn_id, {}).get("Properties", {})
        routes = [ev.get("Properties", {}) for ev in (fn.get("Events") or {}).values() if ev.get("Type") == "HttpApi"]
        c.equal([(ref(r.get("ApiId")), r.get("Method"), r.get("Path"), str(r.get("PayloadFormatVersion")))
                 for r in routes], [("HttpApi", "POST", path_, "2.0")], f"{fn_id} HttpApi route")
        out = outputs.get(output, {})
        value = out.get("Value", {})
        sub = value.get("Fn::Sub") if isinstance(value, dict) else None
        c.equal(sub, "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}" + path_, f"{output} Value")
        c.equal(out.get("Condition"), cond, f"{output} Condition (as {fn_id})")

    # ---- outputs
    missing = EXPECTED_OUTPUTS - set(template.get("Outputs", {}))
    c.check(not missing, f"Outputs missing: {sorted(missing)}")

    # ---- alarms
    alarm_metrics = {(a.get("Properties", {}).get("Namespace"), a.get("Properties", {}).get("MetricName"),
                      ref(a.get("Properties", {}).get("Dimensions", [{}])[0].get("Value")))
                     for a in resources.values() if a.get("Type") == "AWS::CloudWatch::Alarm"}
    c.check(("AWS/SQS", "ApproximateNumberOfMessagesVisible", "EventsDeadLetterQueue") in alarm_metrics,
            "an alarm on the DLQ's ApproximateNumberOfMessagesVisible is required")
    for fn_id in FUNCTIONS:
        c.check(("AWS/Lambda", "Errors", fn_id) in alarm_metrics, f"an alarm on {fn_id}'s Errors is required")

    # ---- storehook's own metrics (EMF, shared/src/metrics.rs): every name the alarms and the
    # dashboard use is one the code publishes, and the dashboard body is JSON
    metrics_rs = (ROOT / "shared/src/metrics.rs").read_text()
    published = set(re.findall(r'"([a-z_]+(?:_total|_ms))"', metrics_rs))
    used = set()
    for a in resources.values():
        if a.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = a.get("Properties", {})
        if props.get("Namespace") == "storehook":
            used.add(props.get("MetricName"))
        for m in props.get("Metrics", []) or []:
            metric = (m.get("MetricStat") or {}).get("Metric") or {}
            if metric.get("Namespace") == "storehook":
                used.add(metric.get("MetricName"))
    body = resources.get("Dashboard", {}).get("Properties", {}).get("DashboardBody")
    text = body[0] if isinstance(body, list) else body if isinstance(body, str) else ""
    if isinstance(body, dict) and "Fn::Sub" in body:
        sub = body["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) else sub
    used |= set(re.findall(r'MetricName=\\?"([a-z_]+)\\?"', text))
    c.check(len(used) >= 8, f"the alarms and dashboard use storehook's metrics (found {sorted(used)})")
    for name in sorted(used):
        c.check(name in published, f"metric {name} is used by the template but not published by metrics.rs")
    plain_text = re.sub(r"\$\{(PlayMetrics|HuaweiMetrics|AmazonMetrics)\}", "", text)
    plain_text = re.sub(r"\$\{[^}]+\}", "X", plain_text)
    try:
        json.loads(plain_text)
        c.check(True, "")
    except ValueError as e:
        c.check(False, f"the dashboard body is not JSON: {e}")
    for alarm in ("AuthenticationFailuresAlarm", "DeliveryFailureRateAlarm"):
        c.check(alarm in resources, f"{alarm} is required")

    for f in c.failures:
        print(f"check_template: FAIL {f}", file=sys.stderr)
    print(f"check_template: {c.passed} passed, {len(c.failures)} failed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
