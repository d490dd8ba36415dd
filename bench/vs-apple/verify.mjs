// Apple's App Store Server Library (Node) doing what `storehook translate
// --store appstore` does to each notification: verify the signedPayload
// (x5c chain to Apple Root CA - G3, ES256 signature) and its nested
// signedTransactionInfo and signedRenewalInfo, with one SignedDataVerifier per
// app and environment, as Apple documents. Online (OCSP) checks off: storehook
// does not make them either.
//
// Usage: node verify.mjs ROOT.pem BODY.json...   (one {"signedPayload": …} body per file)
// Prints one JSON line: {"notifications", "verified", "refused", "ms"}, where ms
// is the time spent verifying (process start excluded; the driver measures it).
import { readFileSync } from "node:fs";
import { SignedDataVerifier, Environment } from "@apple/app-store-server-library";

const [rootPath, ...files] = process.argv.slice(2);
const pem = readFileSync(rootPath, "utf8");
const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");

function claims(jws) {
  return JSON.parse(Buffer.from(jws.split(".")[1], "base64url").toString("utf8"));
}

const verifiers = new Map();
function verifierFor(payload) {
  const data = payload.data ?? payload.summary ?? {};
  const env = data.environment === "Production" ? Environment.PRODUCTION : Environment.SANDBOX;
  const key = `${data.bundleId}|${env}|${data.appAppleId ?? ""}`;
  if (!verifiers.has(key)) {
    verifiers.set(key, new SignedDataVerifier([der], false, env, data.bundleId, data.appAppleId));
  }
  return verifiers.get(key);
}

const bodies = files.map((f) => JSON.parse(readFileSync(f, "utf8")).signedPayload);
let verified = 0;
let refused = 0;
const t0 = process.hrtime.bigint();
for (const signed of bodies) {
  try {
    const v = verifierFor(claims(signed));
    const n = await v.verifyAndDecodeNotification(signed);
    if (n.data?.signedTransactionInfo) await v.verifyAndDecodeTransaction(n.data.signedTransactionInfo);
    if (n.data?.signedRenewalInfo) await v.verifyAndDecodeRenewalInfo(n.data.signedRenewalInfo);
    verified++;
  } catch (e) {
    refused++;
    console.error(`refused: ${e?.status ?? e}`);
  }
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
console.log(JSON.stringify({ notifications: bodies.length, verified, refused, ms }));
