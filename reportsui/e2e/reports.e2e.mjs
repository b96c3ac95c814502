// Drives the /reports page in headless Chromium for cmd/zenklav's TestReportsInBrowser.
//
// The Go test serves the page and a reports API. It writes one scenario per line on stdin,
// as JSON:
//
//   {"name":"light","url":"http://…/reports#token=…","state":"ready","colorScheme":"light",
//    "screenshot":"/path/light.png","download":"trends","reload":true,"timezone":"Europe/Lisbon"}
//
// and reads one result per line on stdout:
//
//   {"name":"light","state":"ready","reports":{"trends":"ready",…},"url":"http://…/reports",
//    "text":"…","alert":"…","tables":{"trends":[["Period",…],…]},"canvases":{"trends":{…}},
//    "download":{"filename":"…","body":"…"},"reloadedState":"ready","consoleErrors":[…],
//    "cspViolations":[…],"failedRequests":[…]}
//
// "state" is the page state to wait for (ready, unauthorized). "download" clicks that
// report's Download CSV and returns the saved file. "reload" reloads the page (the URL has
// lost its token by then) and reports the state it reaches, from the token kept in
// sessionStorage. Chromium is Debian's: CHROMIUM names it (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.E2E_TIMEOUT_MS || 15000);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

async function waitState(page, want) {
  await page.waitForFunction(
    (want) => window.zenklavReports && window.zenklavReports.state === want,
    want,
    { timeout, polling: 20 },
  ).catch(async (e) => {
    const s = await page.evaluate(() => window.zenklavReports && JSON.stringify(window.zenklavReports)).catch(() => undefined);
    throw new Error(`waiting for state ${want}, the page is in ${s}: ${e.message}`);
  });
}

async function run(sc) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    colorScheme: sc.colorScheme || 'light',
    locale: 'en-US',
    timezoneId: sc.timezone || 'UTC',
    acceptDownloads: true,
  });
  const page = await context.newPage();
  // Playwright's init scripts are not subject to the page's CSP; the page's own are.
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const failedRequests = [];
  page.on('response', (r) => { if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  try {
    await page.goto(sc.url, { waitUntil: 'domcontentloaded', timeout });
    await waitState(page, sc.state);
    // The charts draw on a later frame than their data arrives.
    await page.waitForFunction(() => Object.keys(window.zenklavReports.reports).every((k) =>
      window.zenklavReports.reports[k] !== 'ready' || !(k in window.zenklavReports.drawn) || window.zenklavReports.drawn[k]),
    null, { timeout, polling: 20 });
    const info = await page.evaluate(() => {
      const tables = {};
      const canvases = {};
      for (const sec of document.querySelectorAll('.rp-report')) {
        const kind = sec.dataset.report;
        tables[kind] = [...sec.querySelectorAll('table tr')].map((tr) => [...tr.cells].map((c) => c.textContent));
        // ECharts may draw on several layered canvases: a drawn chart has many painted
        // pixels in several colours over them; a blank chart has none.
        const layers = [...sec.querySelectorAll('.rp-chart canvas')].filter((c) => c.width && c.height);
        if (!layers.length) continue;
        let painted = 0;
        const colours = new Set();
        for (const canvas of layers) {
          const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
          for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] === 0) continue;
            painted++;
            if (colours.size < 1000) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
          }
        }
        const canvas = layers[0];
        canvases[kind] = { width: canvas.width, height: canvas.height, layers: layers.length, painted, colours: colours.size };
      }
      return {
        state: window.zenklavReports.state,
        reports: window.zenklavReports.reports,
        url: location.href,
        text: document.querySelector('[data-testid="reports"]').innerText,
        alert: document.querySelector('[data-testid="alert"]').hidden ? '' : document.querySelector('[data-testid="alert"]').textContent,
        who: document.querySelector('[data-testid="who"]').textContent,
        connections: [...document.querySelectorAll('[data-testid="connection"] option')].map((o) => o.value),
        tz: document.querySelector('[data-testid="tz"]').value,
        background: getComputedStyle(document.body).backgroundColor,
        tables,
        canvases,
      };
    });
    if (sc.screenshot) await page.screenshot({ path: sc.screenshot, fullPage: true });
    const result = { name: sc.name, ...info };
    if (sc.download) {
      const [dl] = await Promise.all([
        page.waitForEvent('download', { timeout }),
        page.click(`[data-testid="csv-${sc.download}"]`),
      ]);
      const path = await dl.path();
      result.download = { filename: dl.suggestedFilename(), body: await readFile(path, 'utf8') };
    }
    const csp = await page.evaluate(() => window.__csp);
    if (sc.reload) {
      await page.reload({ waitUntil: 'domcontentloaded', timeout });
      await waitState(page, 'ready');
      result.reloadedState = await page.evaluate(() => window.zenklavReports.state);
    }
    result.cspViolations = csp.concat(sc.reload ? await page.evaluate(() => window.__csp) : []);
    result.consoleErrors = consoleErrors;
    result.failedRequests = failedRequests;
    return result;
  } finally {
    await context.close();
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let sc;
  try {
    sc = JSON.parse(line);
    process.stdout.write(JSON.stringify(await run(sc)) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ name: sc && sc.name, error: String(e && e.stack || e) }) + '\n');
  }
}
await browser.close();
