#!/bin/sh
# The programs of a release (scripts/release.mjs): this file is `mcp`, and `mcp-agent` and
# `mcp-master` are symlinks to it. It runs the Node binary the release carries (lib/node) on the
# bundle of the program named by the name it was started under, from the directory it really
# lives in (symlinks resolved), so the release works from anywhere: /opt/mcp/current/mcp-agent,
# /usr/local/bin/mcp -> /opt/mcp/current/mcp, or the unpacked directory itself.
#
# Why a launcher and not a Node single executable application (Node with the entry script
# injected): on Node 20 such an executable keeps about 11 MiB more of its own pages resident than
# the same Node unmodified, in every process (measured with a one-line script: 51.6 MiB against
# 40.3 MiB), which an idle daemon on a small node cannot spare.
# Node's own flags come from NODE_OPTIONS (the units set it), and those NODE_OPTIONS refuses (V8's
# --min-semi-space-size, for one) from MCP_NODE_FLAGS (an operator's drop-in), put before the
# program's bundle. Arguments are the program's.
case "${0##*/}" in
  mcp | mcp-agent | mcp-master) program="${0##*/}" ;;
  *)
    echo "mcp: started as \"${0##*/}\"; run this launcher as one of mcp, mcp-agent, mcp-master (the release has symlinks with those names)" >&2
    exit 2
    ;;
esac
self=$(readlink -f -- "$0") || exit 1
lib="${self%/*}/lib"
if [ ! -x "$lib/node" ] || [ ! -f "$lib/$program.mjs" ]; then
  echo "$program: this release is incomplete: $lib/node or $lib/$program.mjs is missing; install the release again" >&2
  exit 1
fi
# MCP_NODE_FLAGS is split on spaces on purpose (one flag per word), and never globbed.
set -f
# shellcheck disable=SC2086
exec "$lib/node" ${MCP_NODE_FLAGS-} "$lib/$program.mjs" "$@"
