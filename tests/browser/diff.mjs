// The diff view of a committed task: each file, its hunks and its added,
// removed and context lines (coloured), with the branch, commit and diff stat.
import {assert, env, scenario} from "./lib.mjs";

await scenario("diff", async (t) => {
  const page = await t.signedIn();
  await page.goto(`/#/tasks/${env.TASK_ID}`);
  const changes = page.locator("section[aria-labelledby=changes-title]");
  await t.see(changes, "Changes");
  const notes = changes.locator(".diff-file[data-path='notes.txt']");
  await t.see(notes.locator("h3"), "notes.txt");
  await t.see(notes.locator(".diff-line.add"), "alpha line");
  await t.see(notes.locator(".diff-line.add"), "beta line");
  await t.see(notes.locator("h3"), "+2");
  const readme = changes.locator(".diff-file[data-path='README.md']");
  await t.see(readme.locator(".hunk-head"), "@@");
  await t.see(readme.locator(".diff-line.add"), "Changed by the task.");
  await t.see(readme.locator(".diff-line.ctx"), "A repository for the dashboard.");
  // Added lines look different from context.
  const colour = (locator) => locator.first().evaluate((node) => getComputedStyle(node).backgroundColor);
  assert(await colour(readme.locator(".diff-line.add")) !== await colour(readme.locator(".diff-line.ctx")),
         "added lines are not coloured");

  const artifacts = page.locator("section[aria-labelledby=artifacts-title]");
  await t.see(artifacts, env.BRANCH);
  await t.see(artifacts, env.COMMIT_SHA.slice(0, 12));
  await t.see(artifacts.locator(".diffstat"), "notes.txt");
});
