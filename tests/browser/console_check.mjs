// Drives the live console in Debian's Chromium against a running center and reports what it saw as JSON (last line
// of stdout): `node console_check.mjs BASE_URL USERNAME PASSWORD ALARM_ID SCREENSHOT_DIR VIEWER ADMIN`.
// USERNAME is an operator; VIEWER and ADMIN are a viewer and an admin with the same password.
// Run by tests/integration/test_console.py, which publishes through the broker when this script asks on stdout
// (`WATCHING`) and answers on stdin (`WATCH device metric value` before, nothing after); this script only looks.
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

const [baseUrl, username, password, alarmId, shotDir, viewer, admin] = process.argv.slice(2);
if (!admin) {
  console.error("usage: node console_check.mjs BASE_URL USERNAME PASSWORD ALARM_ID SCREENSHOT_DIR VIEWER ADMIN");
  process.exit(2);
}
const TIMEOUT_MS = 20_000;

const lines = createInterface({ input: process.stdin });
const waiting = [];
const buffered = [];
lines.on("line", (line) => (waiting.length ? waiting.shift()(line) : buffered.push(line)));
const nextLine = () => (buffered.length ? Promise.resolve(buffered.shift()) : new Promise((resolve) => waiting.push(resolve)));
const say = (line) => process.stdout.write(`${line}\n`);

const report = {
  offsite: [],
  failed: [],
  consoleErrors: [],
  pageErrors: [],
  root: null,
  login: {},
  storage: {},
  reading: {},
  ack: {},
  assign: {},
  viewer: {},
  admin: {},
  labels: {},
  streamDown: {},
  kiosk: {},
  screenshots: [],
};

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

async function shot(page, name) {
  await page.waitForTimeout(300); // let the last frame paint
  await page.screenshot({ path: `${shotDir}/${name}`, fullPage: false });
  report.screenshots.push(name);
}

async function labels(page) {
  return page.evaluate(() => ({
    title: document.querySelector('[data-i18n="app.title"]')?.textContent ?? null,
    alarms: document.querySelector(".alarms h2")?.firstChild?.textContent?.trim() ?? null,
    map: document.querySelector(".map-panel h2")?.textContent ?? null,
    firstSector: document.querySelector(".tile h3")?.textContent ?? null,
    stream: document.querySelector("[data-stream-state]")?.textContent?.trim() ?? null,
    htmlLang: document.documentElement.lang,
  }));
}

async function logIn(page, user) {
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await page.waitForSelector(`[data-user="${user}"]`, { timeout: TIMEOUT_MS });
}

// The alarm ids the feed shows, and how many of them are assigned to `user`.
const feedRows = (page, user) =>
  page.$$eval(
    ".alarms [data-alarm-id]",
    (rows, who) => ({
      ids: rows.map((r) => Number(r.getAttribute("data-alarm-id"))),
      assigned: rows.filter((r) => r.querySelector(`[data-assignee="${who}"]`)).length,
    }),
    user,
  );

let phase = "load";
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: "vi-VN" });
  // The page may reach this machine's center and nothing else: anything else is refused and recorded.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== "127.0.0.1") {
      report.offsite.push(url.href);
      return route.abort("blockedbyclient");
    }
    return route.continue();
  });
  const page = await context.newPage();
  page.on("console", (message) => {
    // A refused request is logged by Chromium without its address: add it, to tell an expected refusal from a fault.
    const where = message.text().startsWith("Failed to load resource") ? ` ${message.location().url}` : "";
    if (message.type() === "error") report.consoleErrors.push(`[${phase}] ${message.text()}${where}`);
  });
  page.on("pageerror", (error) => report.pageErrors.push(`[${phase}] ${error.message}`));
  let refreshes = 0;
  page.on("response", (response) => {
    if (new URL(response.url()).pathname === "/auth/refresh" && response.status() === 200) refreshes += 1;
  });
  page.on("requestfailed", (request) => {
    // The stream aborted by leaving the page, or by going offline below, is not a failure of the page.
    const error = request.failure()?.errorText;
    const leaving = error === "net::ERR_ABORTED" && new URL(request.url()).pathname === "/stream";
    if (phase !== "offline" && !leaving) report.failed.push(`[${phase}] ${request.url()}: ${error}`);
  });

  // `/` leads to the console, which starts at its login page.
  const first = await page.goto(`${baseUrl}/`, { waitUntil: "load", timeout: TIMEOUT_MS });
  report.root = { url: page.url(), status: first?.status(), csp: first?.headers()["content-security-policy"] ?? null };
  await page.waitForSelector("[data-login-form]", { timeout: TIMEOUT_MS });
  await shot(page, "console-login-vi-laptop.png");

  phase = "login";
  const loginStarted = Date.now();
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await page.waitForSelector('[data-stream-state="live"]', { timeout: TIMEOUT_MS });
  report.login = { ms: Date.now() - loginStarted, user: await page.getAttribute("[data-user]", "data-user") };
  report.storage = await page.evaluate(() => ({
    sessionHoldsToken: (sessionStorage.getItem("ioc.session") ?? "").includes("ioc_a_"),
    localHoldsToken: JSON.stringify({ ...localStorage }).includes("ioc_"),
    localKeys: Object.keys(localStorage),
  }));

  // A reading published through the broker (by the test, when told) appears in the live readings.
  phase = "reading";
  say("WATCHING");
  const [, device, metric, value] = (await nextLine()).split(" ");
  const watchStarted = Date.now();
  say("PUBLISH");
  await page.waitForSelector(`[data-reading="${device}/${metric}"][data-value="${value}"]`, { timeout: TIMEOUT_MS });
  report.reading = { device, metric, value: Number(value), msFromPublishRequest: Date.now() - watchStarted };
  say("SEEN");

  // Acknowledge the alarm in the page.
  phase = "ack";
  const row = `[data-alarm-id="${alarmId}"]`;
  await page.waitForSelector(`${row} [data-action="ack"]`, { timeout: TIMEOUT_MS });
  await page.click(`${row} [data-action="ack"]`);
  await page.waitForSelector(`${row}[data-status="acknowledged"]`, { timeout: TIMEOUT_MS });
  report.ack = { alarmId: Number(alarmId), shownStatus: await page.getAttribute(row, "data-status") };

  // Take the alarm ("Assign to me"), then keep only the alarms assigned to me, then all of them again.
  phase = "assign";
  await page.click(`${row} [data-action="assign-me"]`);
  await page.waitForSelector(`${row} [data-assignee="${username}"]`, { timeout: TIMEOUT_MS });
  report.assign.shown = await page.textContent(`${row} [data-assignee]`);
  report.assign.assignMeLeft = await page.$$eval(`${row} [data-action="assign-me"]`, (els) => els.length);
  report.assign.before = await feedRows(page, username);
  await page.check('[data-filter="mine"]');
  await page.waitForFunction(
    (who) => {
      const rows = [...document.querySelectorAll(".alarms [data-alarm-id]")];
      return rows.length > 0 && rows.every((r) => r.querySelector(`[data-assignee="${who}"]`));
    },
    username,
    { timeout: TIMEOUT_MS },
  );
  report.assign.mine = await feedRows(page, username);
  await shot(page, "console-alarms-mine-vi-laptop.png");
  await page.uncheck('[data-filter="mine"]');
  await page.waitForFunction(
    (n) => document.querySelectorAll(".alarms [data-alarm-id]").length === n,
    report.assign.before.ids.length,
    { timeout: TIMEOUT_MS },
  );
  report.assign.after = await feedRows(page, username);
  await page.waitForTimeout(800); // the KPI tiles and the map finish their first loads
  await shot(page, "console-overview-vi-laptop.png");

  // Switch to English: the labels change (and the choice is remembered).
  phase = "english";
  report.labels.vi = await labels(page);
  await page.click("[data-lang-switch]");
  await page.waitForFunction(() => document.documentElement.lang === "en", null, { timeout: TIMEOUT_MS });
  report.labels.en = await labels(page);
  report.labels.remembered = await page.evaluate(() => localStorage.getItem("ioc.lang"));
  await shot(page, "console-overview-en-laptop.png");

  // The device page: health, latest values, charts.
  phase = "device";
  await page.evaluate((id) => (location.hash = `#/device/${encodeURIComponent(id)}`), device);
  await page.waitForSelector(`[data-chart="${metric}"] canvas`, { timeout: TIMEOUT_MS });
  await page.waitForTimeout(800);
  await page.waitForSelector("[data-quarantine-reason]", { timeout: TIMEOUT_MS });
  report.device = {
    latest: await page.textContent(`[data-latest="${metric}"] .latest-value`),
    charts: await page.$$eval("[data-chart]", (els) => els.length),
    quarantineReasons: await page.$$eval("[data-quarantine-reason]", (els) => els.map((el) => el.getAttribute("data-quarantine-reason"))),
  };
  await shot(page, "console-device-en-laptop.png");
  await page.screenshot({ path: `${shotDir}/console-device-en-laptop-full.png`, fullPage: true });
  report.screenshots.push("console-device-en-laptop-full.png");
  await page.click('[data-range="30d"]');
  await page.waitForTimeout(800);
  await page.waitForSelector('[data-chart-mode="rollup"]', { timeout: TIMEOUT_MS });
  report.device.rollupHint = await page.textContent('[data-chart-mode="rollup"]');

  // The wall screen, in the same tab (the session lives in this tab's sessionStorage).
  phase = "kiosk";
  await page.setViewportSize({ width: 1920, height: 1080 });
  for (const [lang, everyS] of [["vi", 5], ["en", 30]]) {
    const url = `${baseUrl}/console?kiosk=1&rotate=province&every=${everyS}&lang=${lang}`;
    await page.goto(url, { waitUntil: "load", timeout: TIMEOUT_MS });
    await page.waitForSelector('[data-stream-state="live"]', { timeout: TIMEOUT_MS });
    await page.waitForSelector(".kiosk-title", { timeout: TIMEOUT_MS });
    await page.waitForTimeout(1500);
    report.kiosk[lang] = {
      title: await page.textContent(".kiosk-title"),
      focus: await page.getAttribute("[data-kiosk-focus]", "data-kiosk-focus"),
      fontPx: await page.evaluate(() => getComputedStyle(document.querySelector(".app")).fontSize),
      overflows: await page.evaluate(() => document.documentElement.scrollHeight > window.innerHeight + 2),
    };
    await shot(page, `console-wall-${lang}-1920x1080.png`);
    if (everyS === 5) {
      // The wall screen turns to the next province by itself.
      const before = report.kiosk[lang].focus;
      await page.waitForFunction(
        (focus) => document.querySelector("[data-kiosk-focus]")?.getAttribute("data-kiosk-focus") !== focus,
        before,
        { timeout: 10_000 },
      );
      report.kiosk[lang].next = await page.getAttribute("[data-kiosk-focus]", "data-kiosk-focus");
      await page.waitForTimeout(2000); // its data loads before the page is left
    }
  }

  // The stream drops (the network goes away): the page says so, and comes back by itself.
  phase = "offline";
  await page.setViewportSize({ width: 1366, height: 768 });
  await page.goto(`${baseUrl}/console?lang=vi`, { waitUntil: "load", timeout: TIMEOUT_MS });
  await page.waitForSelector('[data-stream-state="live"]', { timeout: TIMEOUT_MS });
  await context.setOffline(true);
  const downStarted = Date.now();
  let sawDown = false;
  try {
    await page.waitForSelector('[data-stream-state="down"]', { timeout: 45_000 });
    sawDown = true;
    report.streamDown.msToShow = Date.now() - downStarted;
    report.streamDown.text = await page.textContent("[data-stream-banner]");
    await shot(page, "console-stream-down-vi-laptop.png");
  } finally {
    await context.setOffline(false);
  }
  const upStarted = Date.now();
  await page.waitForSelector('[data-stream-state="live"]', { timeout: 45_000 });
  report.streamDown = { ...report.streamDown, sawDown, msToRecover: Date.now() - upStarted };

  // Logging out returns to the login page and leaves no token in the tab.
  phase = "logout";
  await page.click("[data-logout]");
  await page.waitForSelector("[data-login-form]", { timeout: TIMEOUT_MS });
  report.logout = {
    notice: await page.textContent(".login .notice"),
    sessionLeft: await page.evaluate(() => sessionStorage.getItem("ioc.session")),
  };
  report.refreshes = refreshes;

  // A viewer sees who has the alarm, and no control to change it.
  phase = "viewer";
  await logIn(page, viewer);
  await page.waitForSelector(`${row} [data-assignee="${username}"]`, { timeout: TIMEOUT_MS });
  report.viewer = {
    assignee: await page.textContent(`${row} [data-assignee]`),
    controls: await page.$$eval(".alarms [data-action], .alarms [data-filter='mine'], .alarms input", (els) => els.length),
  };
  await shot(page, "console-alarms-viewer-vi-laptop.png");
  await page.click("[data-logout]");
  await page.waitForSelector("[data-login-form]", { timeout: TIMEOUT_MS });

  // An admin gives it by username: a name that cannot take it is refused with the center's reason, on screen;
  // the suggestions are the people who could. Then the admin takes it back from the operator.
  phase = "admin";
  await logIn(page, admin);
  await page.waitForSelector(`${row} [data-action="assign"]`, { timeout: TIMEOUT_MS });
  await page.click(`${row} [data-action="assign"]`);
  await page.waitForSelector(`${row} datalist option[value="${username}"]`, { state: "attached", timeout: TIMEOUT_MS });
  report.admin.suggestions = await page.$$eval(`${row} datalist option`, (els) => els.map((el) => el.getAttribute("value")));
  await page.fill(`${row} [data-assignee-input]`, "nobody");
  await page.click(`${row} [data-action="assign-send"]`);
  await page.waitForSelector("[data-alarm-error]", { timeout: TIMEOUT_MS });
  report.admin.error = await page.textContent("[data-alarm-error]");
  report.admin.formStaysOpen = (await page.$(`${row} [data-assignee-input]`)) !== null;
  await shot(page, "console-alarms-refused-vi-laptop.png");
  await page.click(`${row} [data-action="unassign"]`);
  await page.waitForSelector(`${row} [data-assignee=""]`, { timeout: TIMEOUT_MS });
  report.admin.unassigned = await page.textContent(`${row} [data-assignee]`);
  report.admin.errorLeft = await page.$$eval("[data-alarm-error]", (els) => els.length);
} catch (error) {
  report.error = `${phase}: ${error instanceof Error ? error.message : String(error)}`;
} finally {
  await browser.close();
  lines.close();
}
say(JSON.stringify(report));
