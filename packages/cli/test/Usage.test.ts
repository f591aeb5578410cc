// A wrong command line exits 2 and an operational failure exits 1, as the README promises. A bad
// branded argument is refused before the config is even read: these runs name a config file that
// does not exist, so reaching it would exit 1 instead.
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../bin/mcp.js", import.meta.url))
const missingConfig = "/nonexistent/mcp-usage-test.toml"

const mcp = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    )
  )

describe("usage errors exit 2", () => {
  it("an unknown command, an unknown option and a missing argument", async () => {
    const unknownCommand = await mcp(["frobnicate"])
    expect(unknownCommand.code).toBe(2)
    expect(unknownCommand.stderr).toContain("Invalid subcommand for mcp")
    const unknownOption = await mcp(["ps", "--bogus", "--config", missingConfig])
    expect(unknownOption.code).toBe(2)
    expect(unknownOption.stderr).toContain("--bogus")
    const missing = await mcp(["status", "--config", missingConfig])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("<service>")
  }, 60_000)

  it("--direct without --node", async () => {
    const { code, stderr } = await mcp(["ps", "--direct", "--config", missingConfig])
    expect(code).toBe(2)
    expect(stderr.trim()).toBe("mcp: --direct needs --node <host:port> of the agent")
  }, 30_000)

  it("a bad service name names <service> and the rule, before the config is read", async () => {
    const { code, stderr } = await mcp(["status", "Web_App", "--config", missingConfig])
    expect(code).toBe(2)
    expect(stderr.trim()).toBe(`mcp: <service>: service name "Web_App" may only hold a-z, 0-9 and "-", and must start and end with a letter or digit`)
  }, 30_000)

  it("a bad hostname and a bad node name name their arguments", async () => {
    const hostname = await mcp(["route", "add", "-n", "rift", ":443", "App.example.com", "127.0.0.1:8080", "--config", missingConfig])
    expect(hostname.code).toBe(2)
    expect(hostname.stderr.trim()).toBe(`mcp: <hostname>: hostname "App.example.com" has upper-case letters; write it in lower case`)
    const node = await mcp(["node", "remove", "Rift", "--config", missingConfig])
    expect(node.code).toBe(2)
    expect(node.stderr).toContain(`mcp: <name>: node name "Rift" may only hold`)
  }, 60_000)

  it("an operational failure (here the config cannot be read) exits 1", async () => {
    const { code, stderr } = await mcp(["status", "web", "--config", missingConfig])
    expect(code).toBe(1)
    expect(stderr).toContain(`mcp: ${missingConfig}:`)
    expect(stderr).toContain("cannot read the CLI config")
  }, 30_000)
})
