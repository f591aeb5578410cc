/**
 * Names an operator gives to services, components, routes and nodes.
 * One rule for all of them, because each ends up in a container name, a DNS label or an env var.
 */
import { FastCheck, Schema } from "effect"

/** Lower-case letters, digits and hyphens, starting and ending with a letter or digit. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

const nameArbitrary = () => (fc: typeof FastCheck) =>
  fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/).filter((s) => !s.includes("--"))

const makeName = <B extends string>(brand: B, what: string) =>
  Schema.String.pipe(
    Schema.filter((s) =>
      s.length > 63
        ? `${what} "${s}" is ${s.length} characters long; use at most 63`
        : NAME_PATTERN.test(s)
        ? true
        : `${what} "${s}" may only hold a-z, 0-9 and "-", and must start and end with a letter or digit`
    ),
    Schema.annotations({ arbitrary: nameArbitrary }),
    Schema.brand(brand),
    Schema.annotations({ identifier: brand })
  )

export const ServiceName = makeName("ServiceName", "service name")
export type ServiceName = typeof ServiceName.Type

export const ComponentName = makeName("ComponentName", "component name")
export type ComponentName = typeof ComponentName.Type

export const RouteName = makeName("RouteName", "route name")
export type RouteName = typeof RouteName.Type

export const NodeName = makeName("NodeName", "node name")
export type NodeName = typeof NodeName.Type
