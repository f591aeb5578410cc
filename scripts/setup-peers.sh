#!/usr/bin/env bash
# Installs the real peers the integration tests start as child processes: TLS proxies (HAProxy,
# Caddy), an ACME CA (pebble), authoritative DNS with an HTTP API (PowerDNS) and with RFC 2136
# updates (Knot), OpenSSH's server (the SSH tests' sshd on loopback) and their tools (curl;
# iproute2 for the network namespace the edge test makes), Prometheus (it scrapes the
# daemons' /metrics in test/Observability.test.ts) and Chromium (test/Dashboard.test.ts drives it
# headless through playwright-core; no browser is downloaded). Idempotent; needs root and apt.
# Nothing is started here (Debian's policy here keeps daemons from starting on install).
set -euo pipefail

# The chaos fleet (test/support/ChaosFleet.ts) routes between its network namespaces through
# this one: IPv4 forwarding on, for this boot only (nothing under /etc changes).
if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "1" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sysctl -q -w net.ipv4.ip_forward=1
  else
    echo "IPv4 forwarding is off; the chaos tests need it: sudo sysctl -w net.ipv4.ip_forward=1" >&2
  fi
fi

want=(haproxy caddy socat openssl pebble pdns-server pdns-backend-sqlite3 dnsutils sqlite3 knot curl iproute2 nftables openssh-server prometheus chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "==> test peers already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing test peers: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "==> installing test peers: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
