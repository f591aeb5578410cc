import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../bin/mcp.js", import.meta.url))
const fixtures = fileURLToPath(new URL("../../../test/fixtures/services/", import.meta.url))

const mcp = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    )
  )

describe("mcp validate", () => {
  it("accepts every good example and exits 0", async () => {
    const good = readdirSync(join(fixtures, "good")).map((f) => join(fixtures, "good", f))
    const { code, stdout } = await mcp(["validate", "--internal-zone", "svc.mcp.metacircular.net", ...good])
    expect(code).toBe(0)
    expect(stdout.trim().split("\n")).toHaveLength(good.length)
  }, 30_000)

  it("prints FILE: path: message for each problem and exits 1, touching nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-validate-"))
    const file = join(dir, "web.toml")
    writeFileSync(file, `name = "web"\n[[components]]\nname = "web"\nimage = "localhost/web:latest"\n[[components.routes]]\nport = 70000\nmode = "l7"\nhostame = "web.example.com"\n`)
    const before = statSync(file).mtimeMs
    const { code, stderr } = await mcp(["validate", file])
    expect(code).toBe(1)
    expect(stderr).toContain(`${file}: components[0].image: image "localhost/web:latest" uses ":latest"`)
    expect(stderr).toContain(`${file}: components[0].routes[0].port: must be a whole number from 1 to 65535, got 70000`)
    expect(stderr).toContain(`${file}: components[0].routes[0].hostame: unknown field; did you mean "hostname"?`)
    expect(statSync(file).mtimeMs).toBe(before)
    expect(readdirSync(dir)).toEqual(["web.toml"])
  }, 30_000)

  it("--json reports every file with its problems", async () => {
    const good = join(fixtures, "good", "hello.toml")
    const bad = join(fixtures, "bad", "mode-unknown.toml")
    const { code, stdout } = await mcp(["validate", "--json", good, bad])
    expect(code).toBe(1)
    const reports = JSON.parse(stdout)
    expect(reports).toHaveLength(2)
    expect(reports[0]).toEqual({ file: good, ok: true, service: "hello", problems: [] })
    expect(reports[1].ok).toBe(false)
    expect(reports[1].problems.map((p: { path: string }) => p.path)).toContain("components[0].routes[0].mode")
  }, 30_000)

  it("reports bad volume entries at their own path, naming the fix, and accepts valid options", async () => {
    const file = (kind: string, name: string) => join(fixtures, kind, name)
    const bad = ["volume-container-relative.toml", "volume-container-dotdot.toml", "volume-option-unknown.toml", "volume-options-contradictory.toml", "volume-too-many-fields.toml"]
    const { code, stdout, stderr } = await mcp(["validate", file("good", "volume-options.toml"), ...bad.map((f) => file("bad", f))])
    expect(code).toBe(1)
    expect(stdout).toContain("volume-options.toml")
    expect(stderr).not.toContain("volume-options.toml")
    const [relative, dotdot, unknown, contradictory, fields] = bad.map((f) => file("bad", f))
    expect(stderr).toContain(`${relative}: components[0].volumes[1]: volume "/srv/data:var/lib/data" has a relative container path "var/lib/data"; use an absolute path such as "/var/lib/data"`)
    expect(stderr).toContain(`${dotdot}: components[0].volumes[1]: volume "/srv/climb/logs:/srv/climb/../../var/log" has ".." in its container path; name the directory directly`)
    expect(stderr).toContain(`${unknown}: components[0].volumes[1]: volume "/srv/opts/config:/etc/opts:readonly,Z" has an unknown option "readonly"; options are a comma-separated list`)
    expect(stderr).toContain(`${contradictory}: components[0].volumes[0]: volume "/srv/both:/srv/both:ro,rw" has contradictory options "ro" and "rw"`)
    expect(stderr).toContain(`${fields}: components[1].volumes[0]: volume "/srv/fields:/srv/fields:ro:Z" must be "host-path:container-path" or "host-path:container-path:options"`)
  }, 30_000)

  it("a bad command line exits 2", async () => {
    const { code } = await mcp(["validate"])
    expect(code).toBe(2)
  }, 30_000)
})
