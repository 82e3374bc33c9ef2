// Signing in with a key (keyboard only), seeing who one is, staying signed in
// across a reload, and signing out.
import {ask, assert, env, scenario} from "./lib.mjs";

await scenario("sign_in", async (t) => {
  t.allowResponse(/\/api\/sessions$/, 401, "no session yet");
  t.allowResponse(/\/api\/session$/, 401, "the wrong key");
  const page = await t.newPage();
  await page.goto("/");
  const key = page.getByLabel("API key");
  await key.waitFor();
  assert(await key.evaluate((node) => node === document.activeElement), "the key field has no focus");
  // A refused key says so and signs nobody in.
  await page.keyboard.type(`${env.BUILDD_KEY.slice(0, -6)}zzzzzz`);
  await page.keyboard.press("Enter");
  await t.see(page.getByRole("alert"), "That key was refused.");
  assert(!(await page.locator("#who").innerText()).includes("Signed in"), "signed in with a wrong key");

  await key.fill(env.BUILDD_KEY);
  await page.keyboard.press("Enter");
  await t.see(page.locator("#who"), `Signed in as ${env.BUILDD_ACCOUNT_NAME}`);
  await t.see(page.locator("h1"), "Board");
  await t.liveSays(page, "live");
  // The page keeps no key: the session is an HttpOnly cookie.
  const kept = await page.evaluate(() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage}) + document.cookie);
  assert(!kept.includes("buildd_"), `the page keeps a credential: ${kept}`);

  await page.reload();
  await t.see(page.locator("#who"), `Signed in as ${env.BUILDD_ACCOUNT_NAME}`);
  await t.liveSays(page, "live");

  await page.getByRole("button", {name: "Sign out"}).click();
  await page.getByLabel("API key").waitFor();
  assert((await page.locator("#who").innerText()) === "", "still says who is signed in");
  await page.reload();
  await page.getByLabel("API key").waitFor();
  assert(await page.getByRole("link", {name: "Board"}).isHidden(), "the navigation shows while signed out");

  // A session ended elsewhere (its owner revoked it): the page says so and
  // asks to sign in again.
  await page.getByLabel("API key").fill(env.BUILDD_KEY);
  await page.keyboard.press("Enter");
  await t.liveSays(page, "live");
  t.allowResponse(/\/api\/events/, 401, "the session was revoked");
  await ask("end-session");
  await t.see(page.getByRole("alert"), "Your session ended: sign in again.", 60000);
  await page.getByLabel("API key").waitFor();
});
