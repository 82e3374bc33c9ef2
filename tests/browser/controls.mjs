// Pause, resume and cancel a running task from its page; Retry once it is
// canceled.
import {assert, env, scenario, allowComingEndpoints} from "./lib.mjs";

function lastTick(text) {
  let last = -1;
  for (const m of text.matchAll(/tick (\d+)/g)) last = Math.max(last, Number(m[1]));
  return last;
}

await scenario("controls", async (t) => {
  allowComingEndpoints(t);
  const page = await t.signedIn();
  await page.goto(`/#/tasks/${env.TASK_ID}`);
  const log = page.locator(".log");
  const attempts = page.locator("section[aria-labelledby=attempts-title]");
  await t.see(log, "tick 3", 60000);

  await page.getByRole("button", {name: "Pause"}).click();
  await t.see(attempts, "paused");
  await t.see(log, "→ paused");
  assert(await page.getByRole("button", {name: "Pause"}).isDisabled(), "Pause still offered while paused");
  const atPause = lastTick(await log.innerText());

  await page.getByRole("button", {name: "Resume"}).click();
  await t.see(attempts, "running");
  // It goes on where it stopped.
  await t.see(log, `tick ${atPause + 5}`);

  await page.getByRole("button", {name: "Cancel"}).click();
  await t.see(page.locator(".task-head"), "canceled", 60000);
  assert(await page.getByRole("button", {name: "Cancel"}).isDisabled(), "Cancel still offered");

  // Retry makes a new task (and goes to it), or says it cannot.
  const before = page.url();
  await page.getByRole("button", {name: "Retry"}).click();
  await Promise.race([
    page.waitForURL((url) => url.toString() !== before && /#\/tasks\//.test(url.toString())),
    t.see(page.locator("#toast"), "Retry is not available on this gateway."),
  ]);
});
