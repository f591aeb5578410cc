/**
 * Renewal step "reissue": a new certificate for a hostname a service serves. Its result (the new
 * certificate) is journaled as soon as it exists, so a renewal that fails or is cut short before
 * its commit revokes it, unless a registry row serves it by then.
 */
import { Effect, Schema } from "effect"
import { CertIssuer, IssuedCertificate } from "../../certs/CertIssuer.js"
import { Saga } from "@mcp/rpc"
import { revokeUnserved } from "../CertRevocation.js"

export const journaled = Saga.journaled({
  name: "reissue",
  Intent: Schema.Struct({ service: Schema.String, hostname: Schema.String }),
  Result: IssuedCertificate,
  compensate: ({ result }) => (result === undefined ? Effect.void : revokeUnserved([result]))
})

export const step = (service: string, hostname: string) =>
  Saga.step(journaled, { service, hostname }, Effect.flatMap(CertIssuer, (certs) => certs.issue(hostname)))
