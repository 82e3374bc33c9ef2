// What the browser scenarios share: Debian's chromium through playwright-core
// (from $BUILDD_TEST_PLAYWRIGHT), a watch on every page for console errors,
// page errors, failed requests and error answers nobody expected, screenshots
// when a scenario fails, and the `@@` requests to the C++ side
// (browser_test.cc), which answers `ok [text]` on stdin.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import {pathToFileURL} from "node:url";

export const env = process.env;
const playwright = await import(
  pathToFileURL(path.join(env.BUILDD_TEST_PLAYWRIGHT || "", "index.mjs")).href);

const stdinLines = readline.createInterface({input: process.stdin})[Symbol.asyncIterator]();

// Asks browser_test.cc for `request`; returns its answer's text.
export async function ask(request) {
  process.stdout.write(`@@ ${request}\n`);
  const {value, done} = await stdinLines.next();
  if (done || !value.startsWith("ok")) throw new Error(`${request}: answered ${value}`);
  return value.slice(2).trim();
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const LAUNCH_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

class Tester {
  constructor(context) {
    this.context = context;
    this.problems = [];
    // {url: RegExp, status?: number, failure?: RegExp, why}
    this.allowed = [];
    context.on("page", (page) => this.watch(page));
  }

  // An error answer or failed request the scenario expects (and why).
  allowResponse(url, status, why) {
    this.allowed.push({url, status, why});
  }
  allowFailure(url, failure, why) {
    this.allowed.push({url, failure, why});
  }
  isAllowedResponse(url, status) {
    return this.allowed.some((a) => a.status === status && a.url.test(url));
  }
  isAllowedFailure(url, failure) {
    return this.allowed.some((a) => a.failure && a.url.test(url) && a.failure.test(failure));
  }

  watch(page) {
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const text = message.text();
      const url = (message.location() || {}).url || "";
      // Chromium says so in the console for every error answer and failed
      // request; those the scenario expects are no problem.
      const status = /status of (\d+)/.exec(text);
      if (status && this.isAllowedResponse(url, Number(status[1]))) return;
      const failure = /net::[A-Z_]+/.exec(text);
      if (failure && this.isAllowedFailure(url, failure[0])) return;
      this.problems.push(`console error on ${page.url()}: ${text} (${url})`);
    });
    page.on("pageerror", (error) => this.problems.push(`page error on ${page.url()}: ${error.stack || error}`));
    page.on("requestfailed", (request) => {
      const failure = (request.failure() || {}).errorText || "failed";
      // Cancelled by the page itself: a stream it closes (leaving a task's
      // page), what was loading when it reloads.
      if (failure === "net::ERR_ABORTED") return;
      if (this.isAllowedFailure(request.url(), failure)) return;
      this.problems.push(`request failed: ${request.method()} ${request.url()}: ${failure}`);
    });
    page.on("response", (response) => {
      if (response.status() < 400) return;
      if (this.isAllowedResponse(response.url(), response.status())) return;
      this.problems.push(`unexpected answer ${response.status()} to ${response.request().method()} ${response.url()}`);
    });
  }

  async newPage() {
    const page = await this.context.newPage();
    page.setDefaultTimeout(30000);
    return page;
  }

  // A page signed in with `key` (the account's by default), on the board.
  async signedIn(key = env.BUILDD_KEY) {
    // Before signing in the page asks whether this browser has a session.
    this.allowResponse(/\/api\/sessions$/, 401, "no session yet");
    const page = await this.newPage();
    await page.goto("/");
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", {name: "Sign in"}).click();
    await this.see(page.locator("#who"), "Signed in as");
    await this.see(page.locator("h1"), "Board");
    return page;
  }

  // Waits until `scope` shows `text` (a string or RegExp).
  async see(scope, text, timeout = 30000) {
    await scope.getByText(text).first().waitFor({state: "visible", timeout})
      .catch(async (e) => {
        const shown = await scope.first().innerText().catch(() => "(nothing)");
        throw new Error(`never saw ${text}: ${e.message.split("\n")[0]}\nshown: ${shown.slice(0, 2000)}`);
      });
  }

  // Waits until the live indicator reads exactly `text`.
  async liveSays(page, text, timeout = 30000) {
    await page.waitForFunction((want) => document.getElementById("live").textContent === want, text,
                               {timeout})
      .catch(async (e) => {
        const shown = await page.locator("#live").textContent();
        throw new Error(`the live indicator never said "${text}" (it says "${shown}"): ${e.message.split("\n")[0]}`);
      });
  }

  // With BUILDD_BROWSER_SCREENSHOTS=1: `page` as it is now, as `label`.png.
  async shot(page, label) {
    if (!env.BUILDD_BROWSER_SCREENSHOTS || !env.BUILDD_SCREENSHOT_DIR) return;
    fs.mkdirSync(env.BUILDD_SCREENSHOT_DIR, {recursive: true});
    const file = path.join(env.BUILDD_SCREENSHOT_DIR, `${label}.png`);
    await page.screenshot({path: file, fullPage: true});
    console.log(`screenshot: ${file}`);
  }

  async screenshots(label) {
    const dir = env.BUILDD_SCREENSHOT_DIR;
    if (!dir) return;
    fs.mkdirSync(dir, {recursive: true});
    let n = 0;
    for (const page of this.context.pages()) {
      const file = path.join(dir, `${label}-${++n}.png`);
      try {
        await page.screenshot({path: file, fullPage: true, timeout: 10000});
        console.log(`screenshot: ${file} (${page.url()})`);
      } catch (e) {
        console.log(`no screenshot of ${page.url()}: ${e.message}`);
      }
    }
  }
}

// Runs `body(tester)` in a fresh browser; exits 0 with "PASS <name>", or 1
// with what failed and a screenshot of each page. BUILDD_BROWSER_SCREENSHOTS=1
// keeps screenshots of a passing run too.
export async function scenario(name, body) {
  const browser = await playwright.chromium.launch({
    executablePath: "/usr/bin/chromium", headless: true, args: LAUNCH_ARGS});
  const context = await browser.newContext({
    baseURL: env.BUILDD_GATEWAY_URL, viewport: {width: 1280, height: 900}});
  const tester = new Tester(context);
  let failure = null;
  try {
    await body(tester);
    if (tester.problems.length) throw new Error(`the pages reported:\n  ${tester.problems.join("\n  ")}`);
  } catch (e) {
    failure = e;
  }
  for (const a of tester.allowed) {
    if (a.why) console.log(`allowed: ${a.status || a.failure} for ${a.url} (${a.why})`);
  }
  if (failure || env.BUILDD_BROWSER_SCREENSHOTS) await tester.screenshots(failure ? "failed" : name);
  await browser.close().catch(() => {});
  if (failure) {
    if (tester.problems.length) console.log(`problems:\n  ${tester.problems.join("\n  ")}`);
    console.log(`FAIL ${name}: ${failure.stack || failure}`);
    process.exit(1);
  }
  console.log(`PASS ${name}`);
  process.exit(0);
}

// The endpoints another change adds; until then the page says "not
// available" and these 404s are expected.
export function allowComingEndpoints(tester) {
  for (const url of [/\/api\/runners$/, /\/api\/queue$/, /\/api\/usage$/, /\/api\/accounts\/[^/]+\/grants$/,
                     /\/api\/tasks\/[^/]+\/retry$/]) {
    tester.allowResponse(url, 404, "not on this gateway yet");
  }
}
