#!/usr/bin/env bash
# Installs the peer binaries that some tests compare meshlens against:
# Prometheus (PromQL answers) and Chromium (UI tests). Both come from
# Debian's packages. Nothing happens when they are already installed, or when
# this is not a root shell with apt-get (the tests then skip, naming what is
# missing, unless MESHLENS_REQUIRE_PEERS=1).
set -euo pipefail
need=()
[ -x /usr/bin/prometheus ] || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "test-deps: missing ${need[*]} (install them with your package manager to run every test)" >&2
  exit 0
fi
echo "test-deps: installing ${need[*]} from Debian's packages" >&2
# Keep Debian's prometheus package from starting its own service.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
