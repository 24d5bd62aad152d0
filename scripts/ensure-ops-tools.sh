#!/usr/bin/env bash
# Make promtool and amtool (Debian's `prometheus` and `prometheus-alertmanager` packages)
# available for the alert-rule tests. Does nothing when both are on PATH; installs them with
# apt-get when running as root; otherwise says exactly what to install and exits 1.
# Only the command-line tools are wanted: no daemon is started (policy-rc.d refuses it).
set -euo pipefail

say() { echo "ensure-ops-tools: $*" >&2; }

have_tools() { command -v promtool >/dev/null && command -v amtool >/dev/null; }

have_tools && exit 0

if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    say "promtool and amtool are missing; install them:"
    say "  sudo apt-get install --no-install-recommends prometheus prometheus-alertmanager"
    say "(macOS: brew install prometheus alertmanager)"
    exit 1
fi

say "installing prometheus and prometheus-alertmanager with apt-get (once per machine)"
export DEBIAN_FRONTEND=noninteractive
# The packages' maintainer scripts would start the daemons; refuse that for this install
# only, unless the machine already has its own policy.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=""
if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod +x "$POLICY"
    OWN_POLICY=1
fi
cleanup() { [[ -n "$OWN_POLICY" ]] && rm -f "$POLICY"; return 0; }
trap cleanup EXIT
if [[ -z "${ALFRED_APT_UPDATED:-}" ]]; then
    apt-get update -qq >/dev/null
fi
apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
have_tools || { say "apt-get installed the packages but promtool/amtool are not on PATH"; exit 1; }
