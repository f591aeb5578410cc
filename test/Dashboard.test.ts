/**
 * The master's web dashboard in a real browser: Debian's Chromium, headless, driven by
 * playwright-core (no browser download). A guest signs in with a token and sees the node and a
 * deployed service with its route and certificate, a deploy's steps as they run, the node turn
 * unhealthy when its agent is killed, and a name carrying HTML shown as text. Without a session
 * nothing but the sign-in form is served; a post from another origin is refused; the session
 * cookie is HttpOnly, Secure and SameSite=Strict; every page carries a strict
 * Content-Security-Policy. Screenshots go to reports/dashboard/. Real master, agent and Podman.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { NodeFileSystem } from "@effect/platform-node"
import { TokenFile } from "@mcp/rpc"
import { Effect, Redacted } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const CHROMIUM = "/usr/bin/chromium"
const SHOTS = join(import.meta.dirname, "..", "reports", "dashboard")
const dir = mkdtempSync(join(tmpdir(), "mcp-dashboard-"))
const NODE = "dash-w1"
let podman: PodmanService
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon
let agent: LocalFleet.Daemon
let browser: Browser
let context: BrowserContext
let page: Page
let base = ""
let guestToken = ""
let ca = ""
const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true })

/** A request outside the browser, with the platform CA. */
const request = (method: string, path: string, headers: Record<string, string> = {}, body = "") =>
  new Promise<{ status: number; headers: Record<string, string | Array<string> | undefined>; body: string }>((resolve, reject) => {
    const req = https.request(`${base}${path}`, { method, ca, headers: { ...(body === "" ? {} : { "content-type": "application/x-www-form-urlencoded", "content-length": String(Buffer.byteLength(body)) }), ...headers } }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (text += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    req.on("error", reject)
    req.end(body)
  })

/** A session cookie for a token; the master rereads its token file at most once a second, so a new token may need a moment. */
const signInWith = async (token: string) => {
  const deadline = Date.now() + 5_000
  for (;;) {
    const r = await request("POST", "/ui/login", { origin: base }, `token=${encodeURIComponent(token)}`)
    if (r.status === 303) return String(r.headers["set-cookie"]).split(";")[0]!
    if (Date.now() > deadline) throw new Error(`sign-in answered ${r.status}: ${r.body.slice(0, 300)}`)
    await new Promise((done) => setTimeout(done, 250))
  }
}

/** A live stream (server-sent events) with a session cookie: its status, and when the master ends it. */
const openStream = (cookie: string) =>
  new Promise<{ status: number; ended: Promise<void>; close: () => void }>((resolve, reject) => {
    const req = https.request(`${base}/ui/live`, { ca, headers: { cookie, accept: "text/event-stream" } }, (res) => {
      const ended = new Promise<void>((done) => {
        res.on("end", () => done())
        res.on("close", () => done())
      })
      res.resume()
      resolve({ status: res.statusCode ?? 0, ended, close: () => req.destroy() })
    })
    req.on("error", reject)
    req.end()
  })

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: install it with apt-get install -y chromium (or bash scripts/setup-peers.sh)`)
  mkdirSync(SHOTS, { recursive: true })
  podman = await startPodmanService()
  const masterPort = await LocalFleet.freePort()
  const agentPort = await LocalFleet.freePort()
  base = `https://127.0.0.1:${masterPort}`
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters: [`127.0.0.1:${masterPort}`] })
  ca = readFileSync(join(fleet.caDir, "ca.crt"), "utf8")
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, {
    port: masterPort,
    interval: "1s",
    missThreshold: 3,
    probeTimeout: "1s",
    extra: `[dashboard]\nsample_interval = "1s"`
  }))
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: NODE, port: agentPort, socket: podman.socketPath, masters: [`127.0.0.1:${masterPort}`] }))
  guestToken = Redacted.value(await Effect.runPromise(
    TokenFile.createToken(fleet.tokenFile, { name: "viewer", kind: "human", role: "guest" }).pipe(Effect.provide(NodeFileSystem.layer))
  ))
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
  // The master's certificate is signed by the fleet's own CA, which this browser profile does not know.
  context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } })
  page = await context.newPage()
}, 120_000)

afterAll(async () => {
  await browser?.close()
  await agent?.stop()
  await master?.stop()
  // The agent is killed below: what it ran is removed here, by its node label.
  const left = spawnSync("podman", ["ps", "-aq", "--filter", `label=mcp.node=${NODE}`], { encoding: "utf8", env: podmanEnv() }).stdout.trim()
  for (const id of left.split("\n").filter((l) => l !== "")) spawnSync("podman", ["rm", "-f", "-t", "0", id], { env: podmanEnv() })
  await podman?.stop()
  rmSync(dir, { recursive: true, force: true })
}, 120_000)

describe("the web dashboard", () => {
  it("shows only the sign-in form without a session, and refuses a wrong token", async () => {
    await page.goto(`${base}/`)
    expect(new URL(page.url()).pathname).toBe("/ui")
    await expect(page.locator("form[action='/ui/login'] input[name=token]").count()).resolves.toBe(1)
    expect(await page.locator("#nodes").count()).toBe(0)
    // The parts and the live stream answer 401 without a session.
    expect((await request("GET", "/ui/parts")).status).toBe(401)
    expect((await request("GET", "/ui/live")).status).toBe(401)
    await page.fill("input[name=token]", "not-a-token")
    await page.click("button[type=submit]")
    await expect(page.locator("p.problem").textContent()).resolves.toContain("not accepted")
    expect(await context.cookies()).toEqual([])
    await shot("1-refused")
  }, 60_000)

  it("signs a guest in and shows its node, healthy, with a session cookie scripts cannot read", async () => {
    await page.goto(`${base}/ui`)
    await page.fill("input[name=token]", guestToken)
    await page.click("button[type=submit]")
    await page.locator(`#nodes tr[data-node="${NODE}"][data-health="healthy"]`).waitFor({ timeout: 20_000 })
    await expect(page.locator("header .who").textContent()).resolves.toContain("viewer (guest)")
    const [cookie] = await context.cookies()
    expect(cookie).toMatchObject({ name: "mcp_session", httpOnly: true, secure: true, sameSite: "Strict", path: "/ui" })
    // Run in the page (the test's own types have no DOM).
    expect(await page.evaluate("document.cookie")).toBe("")
    await page.locator("#live-state", { hasText: "live" }).waitFor({ timeout: 10_000 })
    await shot("2-signed-in")
  }, 60_000)

  it("shows a deploy's steps live, then the service with its route and certificate, and charts it", async () => {
    const file = join(dir, "dash-web.toml")
    writeFileSync(file, `name = "dash-web"\nnode = "${NODE}"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\ncmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
    const deploying = cli(["deploy", "dash-web", "--file", file])
    // Steps arrive while the deploy runs, before the CLI returns.
    await page.locator("#progress li.step", { hasText: "dash-web" }).first().waitFor({ timeout: 30_000 })
    const duringDeploy = await page.locator("#progress li").allTextContents()
    await shot("3-deploy-progress")
    await deploying
    await page.locator("#progress li.ended", { hasText: "dash-web: deploy done" }).waitFor({ timeout: 15_000 })
    expect(duringDeploy.some((t) => /dash-web \[dash-w1\] \S+: (running|done)/.test(t)), duringDeploy.join("\n")).toBe(true)
    const row = page.locator(`#services tr[data-service="dash-web"]`)
    await row.waitFor({ timeout: 15_000 })
    const text = (await row.textContent()) ?? ""
    expect(text).toContain("active")
    expect(text).toContain("1 of 1 running")
    expect(text).toMatch(/dash-web\.svc\.mcp\.internal:8443 → \d+ \(web\)/)
    // Its route's certificate, with the days it has left.
    expect(text).toMatch(/dash-web\.svc\.mcp\.internal: \d+ d/)
    // The charts: the node's heartbeat age, and one deploy duration.
    await expect(page.locator("#heartbeat-chart .legend li").allTextContents()).resolves.toEqual([NODE])
    // The chart is drawn by the next refresh after the deploy ended (every 2 s): wait for it.
    await page.locator("#deploy-chart circle.ok").first().waitFor({ timeout: 10_000 })
    await expect(page.locator("#deploy-chart circle.ok").count()).resolves.toBe(1)
    // The audit trail of the deploy reaches the live events.
    await page.locator("#events li", { hasText: "Deploy" }).first().waitFor({ timeout: 10_000 })
    await shot("4-deployed")
  }, 120_000)

  it("shows a name carrying HTML as text", async () => {
    // Names are checked (the CLI would not even send this one), so the master refuses this deploy,
    // sent as a raw RPC; its audit event still carries the name as it was given.
    const hostile = `<img src=x id=injected>`
    const frame = JSON.stringify({ _tag: "Request", id: "1", tag: "Deploy", payload: { definition: { name: hostile, components: [{ name: "web", image: BUSYBOX_IMAGE }] }, dryRun: false }, headers: [] }) + "\n"
    const r = await request("POST", "/master", { authorization: `Bearer ${fleet.operatorToken}`, "content-type": "application/ndjson" }, frame)
    expect(r.body).toContain("InvalidDefinition")
    await page.locator("#events li", { hasText: hostile }).first().waitFor({ timeout: 15_000 })
    expect(await page.locator("#injected").count()).toBe(0)
    expect(await page.locator("img").count()).toBe(0)
    // The server-rendered page escapes it too: a fresh load still has no such element.
    await page.reload()
    await page.locator("#events li", { hasText: hostile }).first().waitFor({ timeout: 15_000 })
    expect(await page.locator("#injected").count()).toBe(0)
    await shot("5-escaped")
  }, 60_000)

  it("sends a strict Content-Security-Policy and refuses a sign-in or sign-out from another origin", async () => {
    const login = await request("GET", "/ui")
    expect(login.headers["content-security-policy"]).toContain("script-src 'self'")
    expect(login.headers["content-security-policy"]).toContain("default-src 'none'")
    expect(login.headers["content-security-policy"]).not.toContain("unsafe-inline")
    expect(login.headers["x-frame-options"]).toBe("DENY")
    // A valid token posted from another site's page: refused, and no session given.
    const forged = await request("POST", "/ui/login", { origin: "https://evil.example", host: new URL(base).host }, `token=${encodeURIComponent(guestToken)}`)
    expect(forged.status).toBe(403)
    expect(forged.headers["set-cookie"]).toBeUndefined()
    const [cookie] = await context.cookies()
    const signOut = await request("POST", "/ui/logout", { origin: "https://evil.example", cookie: `mcp_session=${cookie!.value}` }, "csrf=x")
    expect(signOut.status).toBe(403)
    // The same origin but without the session's form value: refused too.
    const noForm = await request("POST", "/ui/logout", { origin: base, cookie: `mcp_session=${cookie!.value}` }, "csrf=x")
    expect(noForm.status).toBe(403)
    // The session still works.
    expect((await request("GET", "/ui/parts", { cookie: `mcp_session=${cookie!.value}` })).status).toBe(200)
  }, 30_000)

  it("refuses a system token, caps live streams per session, and ends them with the session", async () => {
    const system = readFileSync(fleet.systemTokenFile, "utf8").trim()
    const refusedSystem = await request("POST", "/ui/login", { origin: base }, `token=${encodeURIComponent(system)}`)
    expect(refusedSystem.status).toBe(403)
    expect(refusedSystem.body).toContain("system token")
    expect(refusedSystem.headers["set-cookie"]).toBeUndefined()

    const token = Redacted.value(await Effect.runPromise(
      TokenFile.createToken(fleet.tokenFile, { name: "streamer", kind: "human", role: "guest" }).pipe(Effect.provide(NodeFileSystem.layer))
    ))
    const cookie = await signInWith(token)
    const streams = await Promise.all([1, 2, 3, 4].map(() => openStream(cookie)))
    expect(streams.map((s) => s.status)).toEqual([200, 200, 200, 200])
    const fifth = await openStream(cookie)
    expect(fifth.status).toBe(429)
    // Sign out through the page's own form value: every open stream of the session ends.
    const csrf = /name="csrf" value="([^"]+)"/.exec((await request("GET", "/ui", { cookie })).body)?.[1]
    expect(csrf).toBeDefined()
    expect((await request("POST", "/ui/logout", { origin: base, cookie }, `csrf=${encodeURIComponent(csrf!)}`)).status).toBe(303)
    const ended = await Promise.race([Promise.all(streams.map((s) => s.ended)).then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))])
    expect(ended, "the live streams ended within 10 s of the sign-out").toBe(true)
    for (const s of streams) s.close()
  }, 60_000)

  it("ends a session as soon as its token is taken out of the token file", async () => {
    const token = Redacted.value(await Effect.runPromise(
      TokenFile.createToken(fleet.tokenFile, { name: "short-lived", kind: "human", role: "guest" }).pipe(Effect.provide(NodeFileSystem.layer))
    ))
    const cookie = await signInWith(token)
    expect((await request("GET", "/ui/parts", { cookie })).status).toBe(200)
    await Effect.runPromise(TokenFile.revokeToken(fleet.tokenFile, "short-lived").pipe(Effect.provide(NodeFileSystem.layer)))
    const deadline = Date.now() + 10_000
    let status = 200
    while (status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
      status = (await request("GET", "/ui/parts", { cookie })).status
    }
    expect(status).toBe(401)
  }, 30_000)

  it("shows the node turn unhealthy when its agent is killed", async () => {
    await agent.kill9()
    await page.locator(`#nodes tr[data-node="${NODE}"][data-health="unhealthy"]`).waitFor({ timeout: 30_000 })
    // Its services cannot be asked: the page says so rather than showing nothing.
    await page.locator(".problems li", { hasText: NODE }).waitFor({ timeout: 10_000 })
    await page.locator("#events li.health", { hasText: "unhealthy" }).first().waitFor({ timeout: 10_000 })
    await shot("6-unhealthy")
  }, 60_000)

  it("signs out: the session ends on the master, not only in the browser", async () => {
    const [cookie] = await context.cookies()
    await page.click("header form button[type=submit]")
    await page.locator("form[action='/ui/login']").waitFor({ timeout: 10_000 })
    expect(await context.cookies()).toEqual([])
    expect((await request("GET", "/ui/parts", { cookie: `mcp_session=${cookie!.value}` })).status).toBe(401)
  }, 30_000)
})
