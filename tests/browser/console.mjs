// The console's end-to-end test in a real browser: headless Chromium
// (Debian's `chromium`) driven by playwright-core. Started by
// cli/tests/console.rs, which runs `storehook serve`, posts notifications
// (one of them dead-lettered by a 410) and checks what this script did.
//
// Environment: STOREHOOK_URL, STOREHOOK_ADMIN_TOKEN, STOREHOOK_CHROMIUM,
// STOREHOOK_SCREENSHOTS (a directory), STOREHOOK_DEAD_EVENT (the dead
// letter's event id), STOREHOOK_TRANSLATE_BODY (a signed App Store body).
// Exits 0 when every step passed; prints the failing step otherwise.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("STOREHOOK_URL");
const token = env("STOREHOOK_ADMIN_TOKEN");
const shots = env("STOREHOOK_SCREENSHOTS");
const dead = env("STOREHOOK_DEAD_EVENT");
const translateBody = env("STOREHOOK_TRANSLATE_BODY");

let step = "launch";
const browser = await chromium.launch({
  executablePath: env("STOREHOOK_CHROMIUM"),
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.setDefaultTimeout(20000);
  const outside = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) outside.push(r.url());
  });
  const check = (ok, what) => {
    if (!ok) throw new Error(what);
  };

  step = "the sign-in page refuses a wrong token";
  await page.goto(`${base}/_storehook/`);
  await page.fill("#token", "not-the-admin-token-at-all");
  await page.click("#login");
  await page.waitForSelector('#login-error:has-text("not the admin token")');

  step = "signing in shows the live feed";
  await page.fill("#token", token);
  await page.click("#login");
  await page.waitForSelector("#feed-rows tr.feed-row");
  await page.waitForSelector('tr.feed-row.notification td.type:text-is("SUBSCRIPTION_RENEWED")');
  await page.waitForSelector('tr.feed-row.delivery.delivered td.type:text-is("SUBSCRIPTION_RENEWED")');
  await page.waitForSelector('tr.feed-row.delivery.gone');
  await page.screenshot({ path: `${shots}/feed.png`, fullPage: true });

  step = "a subscription's timeline shows each event's snapshot and delivery";
  await page.click('tr.feed-row.notification:has(td.type:text-is("SUBSCRIPTION_RENEWED")) a.group');
  await page.waitForSelector("#timeline li.timeline-event");
  const types = await page.$$eval("#timeline li.timeline-event strong", (els) => els.map((e) => e.textContent));
  check(
    JSON.stringify(types) === JSON.stringify(["SUBSCRIPTION_STARTED", "ACCESS_GRANTED", "SUBSCRIPTION_RENEWED"]),
    `timeline types ${JSON.stringify(types)}`,
  );
  const seqs = await page.$$eval("#timeline li.timeline-event .seq", (els) => els.map((e) => e.textContent));
  check(JSON.stringify(seqs) === JSON.stringify(["#1", "#2", "#3"]), `timeline sequences ${JSON.stringify(seqs)}`);
  const delivered = await page.$$eval("#timeline .delivery", (els) => els.map((e) => e.textContent));
  check(delivered.every((d) => d.startsWith("delivered")), `timeline deliveries ${JSON.stringify(delivered)}`);
  await page.waitForSelector('#timeline-summary:has-text("ACTIVE, entitled")');
  await page.screenshot({ path: `${shots}/timeline.png`, fullPage: true });
  await page.click("#timeline-close");

  step = "the dead letter is listed and replayed by clicking";
  await page.click("#tab-dead");
  await page.waitForSelector(`tr.dead-row[data-event-id="${dead}"]`);
  await page.screenshot({ path: `${shots}/dead-letters.png`, fullPage: true });
  await page.click(`button.replay[data-event-id="${dead}"]`);
  await page.waitForSelector(`tr.dead-row[data-event-id="${dead}"]`, { state: "detached" });
  await page.click("#tab-feed");
  await page.waitForSelector(`tr.feed-row.delivery.delivered[data-event-id="${dead}"]`);
  await page.screenshot({ path: `${shots}/replayed.png`, fullPage: true });

  step = "the translate playground shows the events of a body, and a refusal";
  await page.click("#tab-translate");
  await page.selectOption("#translate-store", "appstore");
  await page.fill("#translate-body", translateBody);
  await page.click("#translate-run");
  await page.waitForSelector('#translate-summary:has-text("1 event(s)")');
  await page.waitForSelector('.translated[data-type="SUBSCRIPTION_RENEWED"]');
  await page.screenshot({ path: `${shots}/translate.png`, fullPage: true });
  await page.fill("#translate-body", '{"signedPayload": "not.a.jws"}');
  await page.click("#translate-run");
  await page.waitForSelector('#translate-error:has-text("malformed_jws")');

  step = "nothing was fetched from anywhere else";
  check(outside.length === 0, `requests outside the server: ${outside.join(", ")}`);
  console.log("console browser test: every step passed");
} catch (e) {
  console.error(`console browser test FAILED at: ${step}\n${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
