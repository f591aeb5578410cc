/** The text an operator sees for each error that crosses the wire: what failed and what to do. */
import { describe, expect, it } from "@effect/vitest"
import * as Errors from "../src/Errors.js"

describe("error messages", () => {
  it("InvalidDefinition lists each problem on its own line, indented, with its path", () => {
    const e = new Errors.InvalidDefinition({
      service: "web",
      problems: [{ path: "components[0].image", message: "is missing" }, { path: "tier", message: "must be core or worker" }]
    })
    expect(e.message).toBe(`service definition "web" is invalid:\n  components[0].image: is missing\n  tier: must be core or worker`)
  })

  it("InvalidRequest joins the problems with \"; \"", () => {
    const e = new Errors.InvalidRequest({ problems: [{ path: "service", message: "is missing" }, { path: "tail", message: "must be a number" }] })
    expect(e.message).toBe("invalid request: service: is missing; tail: must be a number")
  })

  it("not found, placement and reachability errors name the thing and the command to check it", () => {
    expect(new Errors.ServiceNotFound({ service: "web" }).message).toBe(`service "web" is not deployed here; check the name with mcp ps`)
    expect(new Errors.NodeNotFound({ node: "orion" }).message).toBe(`node "orion" is not known; list nodes with mcp node list`)
    expect(new Errors.PlacementFailed({ service: "web", reason: "no worker" }).message).toBe(`cannot place service "web": no worker`)
    expect(new Errors.NodeUnreachable({ node: "orion", addresses: ["10.0.0.5:9444", "[fd00::5]:9444"], reason: "timed out" }).message).toBe(
      `node "orion" did not answer at 10.0.0.5:9444, [fd00::5]:9444: timed out`
    )
  })

  it("access errors say who, what and how to get access", () => {
    expect(new Errors.Unauthorized({ reason: "token expired" }).message).toBe("unauthorized: token expired")
    expect(new Errors.Forbidden({ principal: "ci", role: "viewer", rpc: "Deploy" }).message).toBe(
      "ci (role viewer) may not call Deploy; ask an admin for a token with the user or admin role"
    )
  })

  it("VersionSkew says which side is older", () => {
    const localOlder = new Errors.VersionSkew({ rpc: "Logs", localVersion: 2, remoteVersion: 3 })
    expect(localOlder.olderSide).toBe("local")
    expect(localOlder.message).toBe("Logs is not available: protocol version 2 here, 3 remote; this side is older: upgrade it to the same MCP release as the other")
    const remoteOlder = new Errors.VersionSkew({ rpc: "Logs", localVersion: 3, remoteVersion: 1 })
    expect(remoteOlder.olderSide).toBe("remote")
    expect(remoteOlder.message).toBe("Logs is not available: protocol version 3 here, 1 remote; the remote side is older: upgrade it to the same MCP release as the other")
  })

  it("DeployFailed says it rolled back, and whether retrying may help", () => {
    expect(new Errors.DeployFailed({ service: "web", step: "pull", reason: "registry down", retryable: true }).message).toBe(
      `deploy of "web" failed at pull: registry down (rolled back; retrying may succeed)`
    )
    expect(new Errors.DeployFailed({ service: "web", step: "start", reason: "bad cmd", retryable: false }).message).toBe(
      `deploy of "web" failed at start: bad cmd (rolled back)`
    )
  })

  it("DeployFailed with containers the rollback left names them and their host ports", () => {
    expect(new Errors.DeployFailed({
      service: "web", step: "dns", reason: "dns down", retryable: true,
      leftovers: [{ container: "web-web-1", hostPorts: [18080, 20001] }]
    }).message).toBe('deploy of "web" failed at dns: dns down (rollback incomplete: web-web-1 (host ports 18080, 20001) left; retrying may succeed)')
  })

  it("PeerFailed names the peer and the operation", () => {
    expect(new Errors.PeerFailed({ peer: "podman", operation: "pull localhost/web:v1", reason: "no space", retryable: false }).message).toBe(
      "podman failed to pull localhost/web:v1: no space"
    )
  })
})
