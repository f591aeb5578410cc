// A full disk told the way an operator can act on it: found in a failure's causes (SQLite's
// SQLITE_FULL, the system's ENOSPC), with the directory and the free space of its file system.
import { describe, expect, it } from "@effect/vitest"
import { SqlError } from "@effect/sql/SqlError"
import { statfsSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { diskFullReason, freeSpace, fullDiskReason, isDiskFull, pathOf } from "../src/DiskSpace.js"

const sqliteFull = Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" })
const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", path: "/srv/mcp/certs/a.pem" })

describe("DiskSpace", () => {
  it("finds a full disk in a failure or the failures it was caused by, and nothing else", () => {
    expect(isDiskFull(new SqlError({ cause: sqliteFull, message: "Failed to execute statement" }))).toBe(true)
    expect(isDiskFull({ _tag: "CertError", cause: { cause: enospc } })).toBe(true)
    expect(isDiskFull(new SqlError({ cause: Object.assign(new Error("busy"), { code: "SQLITE_BUSY" }), message: "Failed" }))).toBe(false)
    expect(isDiskFull("ENOSPC")).toBe(false)
    expect(isDiskFull(undefined)).toBe(false)
  })

  it("names the file the failure names, else the directory given, with its file system's free space", () => {
    expect(pathOf({ cause: enospc })).toBe("/srv/mcp/certs/a.pem")
    expect(pathOf(sqliteFull)).toBeUndefined()
    const s = statfsSync(tmpdir())
    const free = s.bavail * s.bsize
    expect(freeSpace(tmpdir())).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB) free of \d+(\.\d)? (B|KiB|MiB|GiB)$/)
    // The figure is the file system's, within a rounding of its unit (other writers may move it a little).
    const [amount, unit] = freeSpace(tmpdir()).split(" ")
    const scale = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[unit as "B"]
    expect(Math.abs(Number(amount) * scale - free) / Math.max(free, 1)).toBeLessThan(0.05)
    expect(diskFullReason(sqliteFull, "/srv/mcp", "the agent's registry")).toBe(
      `the disk holding /srv/mcp is full (${freeSpace("/srv/mcp")}): the agent's registry could not be written; free space there, then try again`
    )
    expect(diskFullReason({ cause: enospc }, "/srv/mcp", "a file")).toMatch(/^the disk holding \/srv\/mcp\/certs\/a\.pem is full \(/)
    expect(freeSpace("/no/such/dir")).toMatch(/^free space unknown: ENOENT/)
  })

  it("for a write that failed (no file of its own named, its temporary file gone), names the file written and its directory's free space", () => {
    const target = join(tmpdir(), "never-written.pem")
    expect(freeSpace(target)).toBe(freeSpace(tmpdir()))
    const failedWrite = { code: "ENOSPC", message: "ENOSPC: no space left on device, write" }
    expect(fullDiskReason({ cause: failedWrite }, target)).toBe(
      `the disk holding ${target} is full (${freeSpace(tmpdir())}): ${target} could not be written; free space there, then try again`
    )
    expect(fullDiskReason({ cause: { code: "EACCES" } }, target)).toBeUndefined()
  })
})
