// The runners view: the local runner with its account, labels,
// capabilities and slots; the queue.
import {env, scenario} from "./lib.mjs";

await scenario("runners", async (t) => {
  const page = await t.signedIn();
  await page.getByRole("link", {name: "Runners"}).click();
  const row = page.locator(`tr[data-runner='${env.RUNNER_NAME}']`);
  const missing = page.getByText("The runner list is not available on this gateway.");
  await Promise.race([row.waitFor(), missing.waitFor()]);
  if (await missing.isVisible()) {
    throw new Error("GET /api/runners answered 404: this gateway has no runner list yet");
  }
  await t.see(row, env.RUNNER_NAME);
  await t.see(row.locator(".slots"), env.RUNNER_SLOTS);
  await t.see(row, env.BUILDD_ACCOUNT_NAME);  // The runner's account is the one signed in.
  await t.see(row, "linux");
  await t.see(row, "claude");
  await t.see(page.locator("section[aria-labelledby=queue-title]"), "waiting");
});
