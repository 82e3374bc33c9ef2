// A question the agent asks (after its plan was approved) is answered from
// the page, and the task completes.
import {env, scenario} from "./lib.mjs";

await scenario("question", async (t) => {
  const page = await t.signedIn();
  await page.getByRole("link", {name: "New task"}).click();
  await page.getByLabel("Workspace", {exact: true}).selectOption({label: env.BUILDD_WORKSPACE_NAME});
  await page.getByLabel("Provider", {exact: true}).selectOption({label: "Claude Code"});
  await page.getByLabel("Prompt", {exact: true}).fill("KEY-UI-QUESTION make notes.txt");
  await page.getByLabel(/Plan first/).check();
  await page.getByRole("button", {name: "Create task"}).click();
  await page.waitForURL(/#\/tasks\//);

  const box = page.locator(".prompt-box");
  await t.see(box, "Plan — waiting for approval", 90000);
  await page.getByRole("button", {name: "Approve plan"}).click();
  await t.see(box, "Question — waiting for an answer", 90000);
  await t.see(box, "Shall I add a README entry too?");
  await page.getByLabel("Your answer").fill("No, that is all.");
  await page.getByRole("button", {name: "Send answer"}).click();
  await t.see(page.locator(".task-head"), "completed", 90000);
  const log = page.locator(".log");
  await t.see(log, "No, that is all.");
  await t.see(log, "Understood, leaving the README alone.");
  await t.see(page.locator(".diff-file"), "notes.txt");
});
