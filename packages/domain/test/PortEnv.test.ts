import { describe, expect, it } from "@effect/vitest"
import { portEnv, portEnvName } from "../src/PortEnv.js"

describe("port environment", () => {
  it("the unnamed route is $PORT; named ones are $PORT_<NAME>, upper-cased with \"-\" as \"_\"", () => {
    expect(portEnvName(undefined)).toBe("PORT")
    expect(portEnvName("grpc")).toBe("PORT_GRPC")
    expect(portEnvName("grpc-web-v2")).toBe("PORT_GRPC_WEB_V2")
  })

  it("each assigned host port becomes NAME=port, in order", () => {
    expect(portEnv([{ route: undefined, hostPort: 20001 }, { route: "admin-api", hostPort: 20002 }])).toEqual([
      "PORT=20001",
      "PORT_ADMIN_API=20002"
    ])
    expect(portEnv([])).toEqual([])
  })
})
