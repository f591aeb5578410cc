/**
 * How a container learns its ports: `$PORT` for a component's single unnamed route,
 * `$PORT_<NAME>` (upper-cased, "-" as "_") for named routes.
 */
export const portEnvName = (routeName: string | undefined): string =>
  routeName === undefined ? "PORT" : `PORT_${routeName.toUpperCase().replace(/-/g, "_")}`

export const portEnv = (
  assigned: ReadonlyArray<{ readonly route: string | undefined; readonly hostPort: number }>
): Array<string> => assigned.map(({ route, hostPort }) => `${portEnvName(route)}=${hostPort}`)
