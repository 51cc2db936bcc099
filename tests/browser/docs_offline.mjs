// Opens the API's /docs and /redoc in Debian's Chromium with every request that leaves 127.0.0.1 refused, and prints
// what rendered as JSON: `node docs_offline.mjs BASE_URL SCREENSHOT_DIR`. Run by tests/integration/test_docs_offline.py,
// which starts the API and checks the values; this script only looks and reports.
import { chromium } from "playwright-core";

const [baseUrl, screenshotDir] = process.argv.slice(2);
if (!baseUrl || !screenshotDir) {
  console.error("usage: node docs_offline.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}
const TIMEOUT_MS = 30_000;

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
const report = { offsite: [], failed: [], consoleErrors: [], docs: {}, redoc: {} };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // The page may reach this machine's API and nothing else: anything else is refused and recorded.
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
    if (message.type() === "error") report.consoleErrors.push(message.text());
  });
  page.on("requestfailed", (request) => report.failed.push(`${request.url()}: ${request.failure()?.errorText}`));

  // Swagger UI: one block per operation, each naming its path.
  const docsResponse = await page.goto(`${baseUrl}/docs`, { waitUntil: "networkidle", timeout: TIMEOUT_MS });
  await page.waitForSelector(".opblock .opblock-summary-path", { timeout: TIMEOUT_MS });
  report.docs = {
    status: docsResponse?.status(),
    title: await page.title(),
    operations: await page.$$eval(".opblock", (blocks) =>
      blocks.map((block) => {
        const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "";
        const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
        return `${method} ${path}`;
      }),
    ),
    authorizeButton: (await page.$$(".btn.authorize")).length > 0,
  };
  await page.screenshot({ path: `${screenshotDir}/docs-offline.png`, fullPage: false });

  // ReDoc: one section per operation.
  const redocResponse = await page.goto(`${baseUrl}/redoc`, { waitUntil: "networkidle", timeout: TIMEOUT_MS });
  await page.waitForSelector('[data-section-id^="operation/"]', { timeout: TIMEOUT_MS });
  report.redoc = {
    status: redocResponse?.status(),
    title: await page.title(),
    operations: (await page.$$('[data-section-id^="operation/"]')).length,
  };
  await page.screenshot({ path: `${screenshotDir}/redoc-offline.png`, fullPage: false });
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
