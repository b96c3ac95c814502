// Drives the sidebar app in headless Chromium for cmd/zenklav's TestSidebarInBrowser.
//
// The Go test serves the Zendesk simulator's ticket page (which plays Zendesk's side of the
// ZAF handshake) and zenklav's backend, and changes the simulators between scenarios. It
// writes one scenario per line on stdin, as JSON:
//
//   {"name":"found","url":"http://…/agent/tickets/1?locale=es","state":"found",
//    "screenshot":"/path/found.png","colorScheme":"dark"}
//
// and reads one result per line on stdout:
//
//   {"name":"found","state":"found","text":"…","firstRenderMs":312,"height":540,
//    "theme":"dark","lang":"es","zafLog":[…],"consoleErrors":[…]}
//
// A scenario may go on in "steps", each run after the previous result line was read: the
// step's "host" script runs in the ticket view (e.g. zafHost.trigger('ticket.saved')), then
// the step waits until the app is in its "until" state ({"state":…, "testid":…}: the
// sidebar's state, and an element with that data-testid present), and reports the
// sidebar's text as {"name":…,"step":i,"text":…}. A step with "await": true first waits for
// a line on stdin, so the test can change the simulators in between.
//
// "state" is the state to wait for ("loading" waits only for the page to show it).
// Chromium is Debian's: CHROMIUM names it (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.E2E_TIMEOUT_MS || 15000);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

async function run(sc, nextLine) {
  const context = await browser.newContext({
    viewport: { width: 1100, height: 900 },
    colorScheme: sc.colorScheme || 'light',
    locale: sc.browserLocale || 'en-US',
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const failedRequests = [];
  page.on('response', (r) => { if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  try {
    const started = Date.now();
    await page.goto(sc.url, { waitUntil: 'domcontentloaded', timeout });
    const iframe = await page.waitForSelector('iframe[name="app-iframe"]', { timeout });
    // The frame is the app page once the signed-URL form has been posted into it.
    let frame = null;
    for (const deadline = Date.now() + timeout; Date.now() < deadline;) {
      frame = await iframe.contentFrame();
      if (frame && frame.url().includes('/app/sidebar')) break;
      await page.waitForEvent('framenavigated', { timeout: Math.max(1, deadline - Date.now()) }).catch(() => {});
    }
    if (!frame || !frame.url().includes('/app/sidebar')) throw new Error('the app page never loaded in the sidebar');
    const want = sc.state;
    await frame.waitForFunction(
      (want) => {
        // The refusal page has no script: its state is on its root element.
        const el = document.querySelector('[data-testid="sidebar"]');
        const s = window.zenklavSidebar ? window.zenklavSidebar.state : el && el.dataset.state;
        return want === 'loading' ? s === 'loading' : s === want;
      },
      want,
      { timeout, polling: 10 },
    ).catch(async (e) => {
      const s = await frame.evaluate(() => window.zenklavSidebar && window.zenklavSidebar.state).catch(() => undefined);
      throw new Error(`waiting for state ${want}, the sidebar is in ${s}: ${e.message}`);
    });
    const firstRenderMs = Date.now() - started;
    if (want !== 'loading' && await frame.evaluate(() => !!window.zenklavSidebar)) {
      // The host resizes the iframe on the app's request: wait for the height to settle.
      await page.waitForFunction(() => window.zafHost && window.zafHost.lastResize, null, { timeout }).catch(() => {});
    }
    const root = frame.locator('[data-testid="sidebar"]');
    const text = await root.innerText();
    const info = await frame.evaluate(() => ({
      theme: document.documentElement.dataset.theme || '',
      lang: document.documentElement.lang || '',
      links: [...document.querySelectorAll('a[href]')].map((a) => ({ href: a.href, target: a.target, rel: a.rel, text: a.textContent.trim() })),
      sections: [...document.querySelectorAll('[data-testid]')].map((e) => e.dataset.testid),
      background: getComputedStyle(document.body).backgroundColor,
    }));
    const host = await page.evaluate(() => ({
      lastResize: window.zafHost.lastResize,
      iframeHeight: document.querySelector('iframe[name="app-iframe"]').getBoundingClientRect().height,
      subscriptions: window.zafHost.subscriptions,
      rejected: window.zafHost.rejected,
      requests: window.zafHost.log.filter((l) => l.dir === 'in').map((l) => l.message),
    }));
    if (sc.screenshot) await page.screenshot({ path: sc.screenshot, fullPage: true });
    const result = { name: sc.name, state: want, text, firstRenderMs, ...info, host, consoleErrors, failedRequests };
    const steps = sc.steps || [];
    if (!steps.length) return result;
    process.stdout.write(JSON.stringify(result) + '\n');
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (step.await) await nextLine();
      if (step.host) await page.evaluate(step.host);
      // A function, not a string: the app's CSP forbids eval, as it should.
      await frame.waitForFunction(({ state, testid }) =>
        window.zenklavSidebar && window.zenklavSidebar.state === state &&
        (!testid || !!document.querySelector(`[data-testid="${testid}"]`)), step.until, { timeout, polling: 10 },
      ).catch(async (e) => {
        const s = await root.innerText().catch(() => '');
        throw new Error(`step ${i}: waiting for ${JSON.stringify(step.until)}: ${e.message}\nsidebar:\n${s}`);
      });
      if (step.screenshot) await page.screenshot({ path: step.screenshot, fullPage: true });
      const last = { name: sc.name, step: i, text: await root.innerText(), consoleErrors, failedRequests };
      if (i < steps.length - 1) process.stdout.write(JSON.stringify(last) + '\n');
      else return last;
    }
  } finally {
    await context.close();
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
const nextLine = async () => {
  const { value, done } = await lines.next();
  return done ? null : value;
};
for (let line = await nextLine(); line !== null; line = await nextLine()) {
  if (!line.trim()) continue;
  let sc;
  try {
    sc = JSON.parse(line);
    process.stdout.write(JSON.stringify(await run(sc, nextLine)) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ name: sc && sc.name, error: String(e && e.stack || e) }) + '\n');
  }
}
await browser.close();
