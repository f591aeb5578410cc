import { describe, expect, it } from "@effect/vitest"
import { MIN_FREE_BYTES, parseFacts, problems, releaseArch, type NodeFacts } from "../src/provision/Preflight.js"

const good: NodeFacts = { os: "Debian GNU/Linux 12 (bookworm)", machine: "x86_64", glibc: "2.36", systemd: true, freeBytes: 10 * 1024 ** 3, root: true, sudo: false }

describe("provisioning preflight", () => {
  it("reads the probe's key=value lines, and nothing from an answer that lacks one", () => {
    const output = ["os=Debian GNU/Linux 12 (bookworm)", "machine=x86_64", "glibc=2.36", "systemd=yes", `free=${10 * 1024 ** 3}`, "root=yes", "sudo=no", ""].join("\n")
    expect(parseFacts(output)).toEqual(good)
    expect(parseFacts(output.replace("glibc=2.36", "glibc="))).toEqual({ ...good, glibc: undefined })
    for (const key of ["machine", "systemd", "free", "root", "sudo"]) {
      expect(parseFacts(output.split("\n").filter((l) => !l.startsWith(`${key}=`)).join("\n")), key).toBeUndefined()
    }
    expect(parseFacts("sh: 1: getconf: not found")).toBeUndefined()
  })

  it("a Debian node with systemd, glibc 2.28+, room and root passes for its own architecture", () => {
    expect(problems(good, "x64")).toEqual([])
    expect(problems({ ...good, glibc: "2.28", root: false, sudo: true, freeBytes: MIN_FREE_BYTES }, "x64")).toEqual([])
    expect(problems({ ...good, machine: "aarch64" }, "arm64")).toEqual([])
  })

  it("each missing requirement is one problem naming what was found and the fix", () => {
    const bad: NodeFacts = { os: "Alpine Linux v3.19", machine: "aarch64", glibc: undefined, systemd: false, freeBytes: 100 * 1024 * 1024, root: false, sudo: false }
    const found = problems(bad, "x64")
    expect(found.map((p) => p.check)).toEqual(["C library", "architecture", "init system", "disk", "privileges"])
    expect(found.find((p) => p.check === "architecture")).toEqual({
      check: "architecture",
      found: "aarch64 (arm64)",
      fix: "this release is built for x64; build one on an aarch64 machine (npm run release) and provision with it"
    })
    expect(found.find((p) => p.check === "disk")?.found).toBe("100 MiB free under /opt or /var/lib")
    expect(problems({ ...good, glibc: "2.24" }, "x64")).toEqual([
      { check: "C library", found: "glibc 2.24 on Debian GNU/Linux 12 (bookworm)", fix: "upgrade the node's OS: the release's Node needs glibc 2.28 or newer (Debian 10+)" }
    ])
    expect(problems({ ...good, glibc: "2.100" }, "x64")).toEqual([])
  })

  it("names architectures as the release archives do", () => {
    expect([releaseArch("x86_64"), releaseArch("aarch64"), releaseArch("armv7l"), releaseArch("mips")]).toEqual(["x64", "arm64", "arm", undefined])
  })
})
