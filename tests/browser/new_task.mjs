// A command task created from the form runs live to completed: its output
// and states arrive on the open page, and the board files it under Done.
import {assert, env, scenario} from "./lib.mjs";

await scenario("new_task", async (t) => {
  const page = await t.signedIn();
  await page.getByRole("link", {name: "New task"}).click();
  await t.see(page.locator("h1"), "New task");
  await page.getByLabel("Workspace", {exact: true}).selectOption({label: env.BUILDD_WORKSPACE_NAME});
  await page.getByLabel("Provider", {exact: true}).selectOption({label: "Shell command"});
  await page.getByLabel("Title", {exact: true}).fill("say hello");
  await page.getByLabel("Command", {exact: true}).fill("echo hello from the form; sleep 2; echo second line");
  await page.getByLabel("Priority", {exact: true}).fill("5");
  await page.getByRole("button", {name: "Create task"}).click();
  await page.waitForURL(/#\/tasks\/[0-9a-f-]+$/);
  const head = page.locator(".task-head");
  await t.see(head, "say hello");
  // Live: the first line while it still runs, then the rest.
  await t.see(page.locator(".log"), "hello from the form", 60000);
  await t.see(head, "running");
  await t.see(page.locator(".log"), "second line");
  await t.see(head, "completed");
  await t.see(page.locator(".log"), "completed");
  const facts = page.locator("dl.facts").first();
  await t.see(facts, env.BUILDD_WORKSPACE_NAME);
  await t.see(facts, "5");
  await t.see(page.locator("section[aria-labelledby=attempts-title]"), "laptop");

  await page.getByRole("link", {name: "Board", exact: true}).click();
  const done = page.locator("[data-column=done]");
  await t.see(done, "say hello");
  assert(await page.locator(".card", {hasText: "say hello"}).count() === 1, "the task shows more than once");
  await t.see(done.locator(".card", {hasText: "say hello"}), env.BUILDD_WORKSPACE_NAME);
});
