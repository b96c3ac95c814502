// Drives headless Chromium, step by step, for cmd/zenklav's browser tests of server-rendered
// pages: TestSMSSandboxInBrowser (a person texting the brand on the Klaviyo simulator's phone
// page and an agent answering in the Zendesk simulator's agent view, each in a page of its
// own) and TestAdminInBrowser (the /admin setup wizard and the simulators' consent pages).
//
// The Go test writes one step per line on stdin, as JSON, and reads one result per line:
//
//   {"op":"open","page":"phone","url":"http://…/sandbox/phone"}   open (or go to) a URL
//   {"op":"fill","page":"phone","selector":"#text-body","value":"Where is my order?"}
//   {"op":"click","page":"phone","selector":"#text-send"}
//   {"op":"select","page":"admin","selector":"select[name=sms_brand]","value":"8"}
//   {"op":"wait","page":"phone","selector":"#thread","text":"It ships","timeoutMs":30000}
//   {"op":"shot","page":"phone","path":"/…/sms-phone.png"}
//
// wait polls until the element's innerText contains text, or fails at the deadline with the
// text it saw. Every result has the element's text (for wait), and the page's console errors
// and failed requests so far: {"text":…,"consoleErrors":[…],"failedRequests":[…]}, or
// {"error":…}.
//
// playwright-core is the sidebar app's npm package, as for sidebar.e2e.mjs; Chromium is
// Debian's (CHROMIUM).
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const pages = {};

async function page(name) {
  if (pages[name]) return pages[name];
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, locale: 'en-US', timezoneId: 'UTC' });
  const p = { page: await context.newPage(), consoleErrors: [], failedRequests: [] };
  p.page.on('console', (m) => { if (m.type() === 'error') p.consoleErrors.push(m.text()); });
  p.page.on('pageerror', (e) => p.consoleErrors.push(String(e)));
  p.page.on('response', (r) => { if (r.status() >= 400) p.failedRequests.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  pages[name] = p;
  return p;
}

async function step(s) {
  const p = await page(s.page);
  const timeout = s.timeoutMs || 15000;
  let text;
  switch (s.op) {
    case 'open':
      await p.page.goto(s.url, { waitUntil: 'domcontentloaded', timeout });
      break;
    case 'fill':
      await p.page.fill(s.selector, s.value, { timeout });
      break;
    case 'click':
      await p.page.click(s.selector, { timeout });
      break;
    case 'select':
      await p.page.selectOption(s.selector, s.value, { timeout });
      break;
    case 'wait':
      try {
        await p.page.waitForFunction(({ selector, text }) => {
          const el = document.querySelector(selector);
          return !!el && el.innerText.includes(text);
        }, { selector: s.selector, text: s.text }, { timeout, polling: 100 });
      } catch (e) {
        const seen = await p.page.evaluate((sel) => { const el = document.querySelector(sel); return el ? el.innerText : '(no element)'; }, s.selector).catch(() => '');
        throw new Error(`waiting ${timeout} ms for ${JSON.stringify(s.text)} in ${s.selector}, which shows:\n${seen}`);
      }
      text = await p.page.innerText(s.selector);
      break;
    case 'shot':
      await p.page.screenshot({ path: s.path, fullPage: true });
      break;
    default:
      throw new Error(`unknown op ${s.op}`);
  }
  return { text, url: p.page.url(), consoleErrors: p.consoleErrors, failedRequests: p.failedRequests };
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue;
  let result;
  try {
    result = await step(JSON.parse(line));
  } catch (e) {
    result = { error: String(e && e.stack || e) };
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}
await browser.close();
