import { describe, expect, it } from "@effect/vitest"
import { classifyHostname, defaultHostname, hostnameProblem, isUnder } from "../src/Hostname.js"

describe("hostname problems", () => {
  it("each problem is named with the fix", () => {
    expect(hostnameProblem("")).toBe("hostname is empty")
    const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}`
    expect(long.length).toBe(255)
    expect(hostnameProblem(long)).toBe("hostname is 255 characters long; DNS allows at most 253")
    expect(hostnameProblem("Api.example.com")).toBe(`hostname "Api.example.com" has upper-case letters; write it in lower case`)
    expect(hostnameProblem("api")).toBe(`hostname "api" has a single label; use a fully qualified name such as "api.example.com"`)
    expect(hostnameProblem("api_v1.example.com")).toBe(
      `hostname "api_v1.example.com" has an invalid label "api_v1": labels hold a-z, 0-9 and "-", 1 to 63 characters, not starting or ending with "-"`
    )
    expect(hostnameProblem("api.example.com")).toBeUndefined()
    expect(hostnameProblem(long.slice(2))).toBeUndefined() // 253 characters
  })

  it("two labels are a fully qualified name", () => {
    expect(hostnameProblem("example.com")).toBeUndefined()
    expect(hostnameProblem("a.b")).toBeUndefined()
  })

  it("a trailing dot asks to drop it; a leading dot is an empty label", () => {
    expect(hostnameProblem("api.example.com.")).toBe(`hostname "api.example.com." ends with "."; write it without the trailing dot`)
    expect(hostnameProblem(".api.example.com")).toBe(
      `hostname ".api.example.com" has an invalid label "": labels hold a-z, 0-9 and "-", 1 to 63 characters, not starting or ending with "-"`
    )
  })
})

describe("hostname classes", () => {
  const zone = "svc.mcp.internal"

  it("the default hostname is <service>.<internal zone>", () => {
    expect(defaultHostname("web", zone)).toBe("web.svc.mcp.internal")
  })

  it("a name is under a domain when it is the domain or ends with .<domain>", () => {
    expect(isUnder("example.com", "example.com")).toBe(true)
    expect(isUnder("a.example.com", "example.com")).toBe(true)
    expect(isUnder("notexample.com", "example.com")).toBe(false)
  })

  it("internal names stay internal, whatever the allowed domains", () => {
    expect(classifyHostname("web.svc.mcp.internal", zone, ["mcp.internal"])).toEqual({ _tag: "Internal" })
    expect(classifyHostname(zone, zone, [])).toEqual({ _tag: "Internal" })
  })

  it("a public name matches the most specific allowed domain, in any order of the list", () => {
    expect(classifyHostname("x.apps.example.com", zone, ["example.com", "apps.example.com"])).toEqual({ _tag: "Public", allowedDomain: "apps.example.com" })
    expect(classifyHostname("x.apps.example.com", zone, ["apps.example.com", "example.com"])).toEqual({ _tag: "Public", allowedDomain: "apps.example.com" })
    expect(classifyHostname("www.example.com", zone, ["apps.example.com", "example.com"])).toEqual({ _tag: "Public", allowedDomain: "example.com" })
  })

  it("a name under no allowed domain is not allowed, and carries the list", () => {
    expect(classifyHostname("www.example.org", zone, ["example.com"])).toEqual({ _tag: "PublicNotAllowed", allowedDomains: ["example.com"] })
    expect(classifyHostname("www.example.org", zone, [])).toEqual({ _tag: "PublicNotAllowed", allowedDomains: [] })
  })
})
