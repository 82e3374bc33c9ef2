// A plan-first Claude Code task (the real CLI against the fake Messages
// API): the page shows its plan, it is approved there, and it completes with
// the planned file committed.
import {env, scenario} from "./lib.mjs";

await scenario("plan_first", async (t) => {
  const page = await t.signedIn();
  await page.getByRole("link", {name: "New task"}).click();
  await page.getByLabel("Workspace", {exact: true}).selectOption({label: env.BUILDD_WORKSPACE_NAME});
  await page.getByLabel("Provider", {exact: true}).selectOption({label: "Claude Code"});
  await page.getByLabel("Title", {exact: true}).fill("plan it");
  await page.getByLabel("Prompt", {exact: true}).fill("KEY-UI-PLAN make plan.txt");
  await page.getByLabel(/Plan first/).check();
  await page.getByRole("button", {name: "Create task"}).click();
  await page.waitForURL(/#\/tasks\//);

  const box = page.locator(".prompt-box");
  await t.see(box, "Plan — waiting for approval", 90000);
  await t.see(box, "Plan: 1. create plan.txt with the word done.");
  await t.see(page.locator(".task-head"), "waiting input");
  await page.getByRole("button", {name: "Approve plan"}).click();
  await t.see(page.locator(".task-head"), "completed", 90000);
  await box.waitFor({state: "hidden"});
  const log = page.locator(".log");
  await t.see(log, "Plan: 1. create plan.txt");
  await t.see(log, "approve");
  // The tool call, folded with its result.
  const tool = log.locator("details.tool", {hasText: "Write"}).first();
  await t.see(tool, "plan.txt");
  await tool.locator("summary").click();
  await t.see(tool, "result");
  await t.see(page.locator(".diff-file"), "plan.txt");
  await t.see(page.locator(".diff-line.add"), "done");
});
