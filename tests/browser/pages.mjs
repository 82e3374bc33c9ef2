// Every page as an admin sees it, with no console error: the board, a task,
// the new task form, runners and the queue, admin (an account made with its
// key shown once and copied, a new key, the keys revoked; a workspace; a
// grant). The live indicator says live on each; a phone's width never
// scrolls sideways.
import {ask, assert, env, scenario, allowComingEndpoints} from "./lib.mjs";

async function noSidewaysScroll(page, what) {
  const {width, scroll} = await page.evaluate(() => ({width: window.innerWidth, scroll: document.documentElement.scrollWidth}));
  assert(scroll <= width + 1, `${what} scrolls sideways on a phone (${scroll} > ${width})`);
}

await scenario("pages", async (t) => {
  allowComingEndpoints(t);
  const page = await t.signedIn(env.BUILDD_ADMIN_KEY);
  await t.see(page.locator("#who"), "(admin)");
  const response = await page.request.get("/");
  const csp = response.headers()["content-security-policy"] || "";
  assert(csp.includes("default-src 'none'") && !csp.includes("unsafe-inline"), `CSP: ${csp}`);

  // A task that fails while the board is open: its error event is news, and
  // the indicator still says live.
  await t.liveSays(page, "live");
  const failing = await ask("create-failing");
  await t.see(page.locator(`[data-column=failed] .card[data-task-id='${failing}']`), "fails on purpose", 60000);
  await t.liveSays(page, "live");

  const views = [
    ["Board", "Board", async () => {
      await t.see(page.locator("[data-column=done]"), "a finished task");
      // A task no runner may take waits in Pending, saying why when the
      // gateway tells.
      const card = page.locator(`[data-column=pending] .card[data-task-id='${env.PENDING_ID}']`);
      await t.see(card, "needs a gpu");
      const {task} = await (await page.request.get(`/api/tasks/${env.PENDING_ID}`)).json();
      if (task.waitingReason) await t.see(card.locator(".waiting"), "waiting:");
      if (task.queuePosition) await t.see(card.locator(".waiting"), `#${task.queuePosition} in the queue`);
      // By keyboard: a card opens its task.
      await page.locator(`.card[data-task-id='${env.TASK_ID}'] a`).focus();
      await page.keyboard.press("Enter");
      await page.waitForURL(new RegExp(`#/tasks/${env.TASK_ID}$`));
      await t.see(page.locator(".task-head"), "a finished task");
      await page.goBack();
      await t.see(page.locator("h1"), "Board");
    }],
    ["New task", "New task", async () => {
      const options = await page.getByLabel("Workspace", {exact: true}).locator("option").allInnerTexts();
      assert(options.includes(env.BUILDD_WORKSPACE_NAME), `the workspaces offered: ${options}`);
    }],
    ["Runners", "Runners", async () => t.see(page.locator("section[aria-labelledby=queue-title]"), /waiting|not available/)],
    ["Admin", "Admin", async () => t.see(page.locator("section[aria-labelledby=accounts-title]"), env.BUILDD_ACCOUNT_NAME)],
  ];
  for (const [link, heading, check] of views) {
    await page.getByRole("link", {name: link, exact: true}).click();
    await t.see(page.locator("h1"), heading);
    await check();
    await t.liveSays(page, "live");
    await t.shot(page, `view-${link.replace(/ /g, "-").toLowerCase()}`);
  }
  await page.goto(`/#/tasks/${env.TASK_ID}`);
  await t.see(page.locator(".task-head"), "a finished task");
  await t.see(page.locator(".log"), "finished");
  await t.liveSays(page, "live");
  await t.shot(page, "view-task");

  // Admin: an account, its key once, copied; a second key; revoked.
  await page.getByRole("link", {name: "Admin"}).click();
  const accounts = page.locator("section[aria-labelledby=accounts-title]");
  await accounts.getByLabel("Name", {exact: true}).fill("new-laptop");
  await accounts.getByLabel("Type", {exact: true}).selectOption("user");
  await accounts.getByRole("button", {name: "Create account"}).click();
  await t.see(accounts.locator(".key-once"), "New key for new-laptop (shown once)");
  const key = await accounts.locator(".new-key").innerText();
  assert(/^buildd_user_/.test(key), `the new key reads ${key}`);
  await accounts.getByRole("button", {name: "Copy"}).click();
  await t.see(accounts.locator(".key-once"), /Copied|Selected/);
  await t.see(accounts.locator("tbody"), "new-laptop");
  await accounts.getByRole("button", {name: "New key for new-laptop"}).click();
  await page.waitForFunction((old) => {
    const shown = document.querySelector(".new-key");
    return shown && shown.textContent !== old && shown.textContent.startsWith("buildd_user_");
  }, key);
  await accounts.getByRole("button", {name: "Revoke all keys of new-laptop"}).click();
  await accounts.getByRole("button", {name: "Confirm: revoke all keys of new-laptop"}).click();
  await t.see(page.locator("#toast"), "Revoked 2 key(s) of new-laptop.");

  // A workspace, then a grant on it.
  const workspaces = page.locator("section[aria-labelledby=workspaces-title]");
  await workspaces.getByLabel("Name", {exact: true}).fill("second-repo");
  await workspaces.getByLabel("Repository URL").fill("https://example.com/second.git");
  await workspaces.getByLabel("Default branch").fill("trunk");
  await workspaces.getByRole("button", {name: "Create workspace"}).click();
  await t.see(workspaces.locator("tbody"), "second-repo");
  await t.see(workspaces.locator("tbody"), "trunk");
  const grants = page.locator("section[aria-labelledby=grants-title]");
  await grants.getByLabel("Account", {exact: true}).selectOption({label: "new-laptop"});
  await grants.getByLabel("Workspace", {exact: true}).selectOption({label: "second-repo"});
  await grants.getByRole("button", {name: "Grant"}).click();
  await t.see(page.locator("#toast"), "Granted.");

  // A phone.
  await page.setViewportSize({width: 390, height: 844});
  for (const hash of ["#/board", `#/tasks/${env.TASK_ID}`, "#/new", "#/admin"]) {
    await page.goto(`/${hash}`);
    await page.locator("h1").first().waitFor();
    await noSidewaysScroll(page, hash);
    await t.shot(page, `phone-${hash.split("/")[1]}`);
  }
});
