/**
 * The options a bind mount may carry, as Docker's `-v` accepts them (and Podman with it): a
 * comma-separated list with at most one option of each kind. Its own module (re-exported by
 * ServiceDefinition) so that Policy loads without the service definition.
 */
export const VOLUME_OPTIONS = {
  access: ["ro", "rw"],
  "SELinux label": ["z", "Z"],
  propagation: ["private", "rprivate", "shared", "rshared", "slave", "rslave"],
  // Podman chowns the host directory to the container's (namespaced) root: how a service makes
  // its own /srv/<service> writable under the user namespace containers run in.
  ownership: ["U"]
} as const satisfies Record<string, ReadonlyArray<string>>
