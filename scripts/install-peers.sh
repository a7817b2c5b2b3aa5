#!/usr/bin/env bash
# Install the peer systems `make bench-peers` compares meshlens with, at pinned versions, under
# $MESHLENS_PEERS (default ~/.cache/meshlens-peers). Idempotent: a peer whose stamp matches its
# pinned version is skipped, so re-running is cheap.
#
#   scripts/install-peers.sh            install what is missing
#   scripts/install-peers.sh versions   print the pinned versions (the harness records them)
#   scripts/install-peers.sh jaeger telemetrygen   install only these (debs, jaeger, otelcol,
#                                       telemetrygen); `make test-peers` uses this
#
# A cold install takes ~10-15 min on 2 cores (Jaeger ~6 min, collector ~4 min), so run it in the
# background:  scripts/install-peers.sh > /tmp/peers-install.log 2>&1 &
# Network: only the Go module proxy ($GOPROXY) and Debian's apt repositories.
#
# What lands in $MESHLENS_PEERS/bin:
#   jaeger-all-in-one       Jaeger v1 all-in-one, built from the module proxy's copy of
#                           github.com/jaegertracing/jaeger (`go install` refuses it: its go.mod
#                           has a replace directive)
#   hotrod                  Jaeger's HotROD example from the same module copy
#   builder                 OpenTelemetry Collector Builder
#   otelcol-meshlens-peer   collector built from cmd/meshlens-benchpeers/peers/otelcol-builder.yaml
#   telemetrygen            contrib's trace generator (optional cross-check; the harness has its own)
#   prometheus, victoria-metrics  symlinks to the Debian packages' binaries
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${MESHLENS_PEERS:-$HOME/.cache/meshlens-peers}

JAEGER_VERSION=v1.76.0
OTELCOL_VERSION=v0.158.0
TELEMETRYGEN_VERSION=v0.161.0
PROMETHEUS_DEB=2.42.0+ds-5+deb12u1
VICTORIA_DEB=1.79.5+ds1-2+b5

if [[ ${1:-} == versions ]]; then
  printf 'jaeger %s\notelcol %s\ntelemetrygen %s\nprometheus-deb %s\nvictoria-metrics-deb %s\n' \
    "$JAEGER_VERSION" "$OTELCOL_VERSION" "$TELEMETRYGEN_VERSION" "$PROMETHEUS_DEB" "$VICTORIA_DEB"
  exit 0
fi

export GOBIN=$PEERS/bin
export GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
# The Go module and build caches are the user's own unless MESHLENS_PEERS_GOCACHE=isolated, which
# keeps everything under $MESHLENS_PEERS (slower: nothing is shared with other builds).
if [[ ${MESHLENS_PEERS_GOCACHE:-} == isolated ]]; then
  export GOMODCACHE=$PEERS/go/pkg/mod GOCACHE=$PEERS/go/cache
fi

log() { printf '[install-peers %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
stamp_ok() { [[ -x $PEERS/bin/$1 && -f $PEERS/stamps/$1 && "$(cat "$PEERS/stamps/$1")" == "$2" ]]; }
stamp_set() { echo "$2" > "$PEERS/stamps/$1"; }

mkdir -p "$PEERS"/{bin,src,stamps}
command -v go >/dev/null || { echo "install-peers: go toolchain not found" >&2; exit 1; }

install_debs() {
  local have_p have_v
  have_p=$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)
  have_v=$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || true)
  if [[ -n $have_p && -n $have_v ]]; then
    log "prometheus $have_p, victoria-metrics $have_v already installed"
  elif [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    log "prometheus/victoria-metrics missing and not root with apt-get: install the Debian packages prometheus=$PROMETHEUS_DEB victoria-metrics=$VICTORIA_DEB yourself"
    return
  else
    log "apt-get install prometheus victoria-metrics (pinned $PROMETHEUS_DEB / $VICTORIA_DEB when available)"
    apt-get update -qq
    # The packages' maintainer scripts would start the servers on all interfaces: forbid it.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    local pk=prometheus pv=victoria-metrics
    [[ -n $have_p ]] && pk="" || pk="prometheus=$PROMETHEUS_DEB"
    [[ -n $have_v ]] && pv="" || pv="victoria-metrics=$VICTORIA_DEB"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pk $pv \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pk%%=*} ${pv%%=*}
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    update-rc.d prometheus disable >/dev/null 2>&1 || true
    update-rc.d victoria-metrics disable >/dev/null 2>&1 || true
  fi
  local b; for b in prometheus victoria-metrics; do
    [[ -x /usr/bin/$b ]] && ln -sf "/usr/bin/$b" "$PEERS/bin/$b"
  done
  return 0
}

install_jaeger() {
  if stamp_ok jaeger-all-in-one "$JAEGER_VERSION" && stamp_ok hotrod "$JAEGER_VERSION"; then
    log "jaeger-all-in-one + hotrod $JAEGER_VERSION already installed"; return; fi
  log "jaeger $JAEGER_VERSION: go mod download, then go build ./cmd/all-in-one ./examples/hotrod in a copy"
  local dir src=$PEERS/src/jaeger-$JAEGER_VERSION
  dir=$(cd /tmp && go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -n $dir && -d $dir ]] || { echo "install-peers: go mod download of jaeger $JAEGER_VERSION failed" >&2; exit 1; }
  rm -rf "$src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
  local ld="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION"
  (cd "$src" && go build -trimpath -ldflags "$ld" -o "$PEERS/bin/jaeger-all-in-one" ./cmd/all-in-one)
  stamp_set jaeger-all-in-one "$JAEGER_VERSION"; log "  jaeger-all-in-one built"
  (cd "$src" && go build -trimpath -ldflags "$ld" -o "$PEERS/bin/hotrod" ./examples/hotrod)
  stamp_set hotrod "$JAEGER_VERSION"; log "  hotrod built"
}

install_otelcol() {
  if ! stamp_ok builder "$OTELCOL_VERSION"; then
    log "builder $OTELCOL_VERSION: go install"
    (cd /tmp && go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION")
    stamp_set builder "$OTELCOL_VERSION"
  fi
  local manifest=$ROOT/cmd/meshlens-benchpeers/peers/otelcol-builder.yaml want
  want="$OTELCOL_VERSION $(sha256sum "$manifest" | cut -c1-16)"
  if stamp_ok otelcol-meshlens-peer "$want"; then log "otelcol-meshlens-peer ($want) already built"; return; fi
  log "otelcol-meshlens-peer: builder --config=$manifest"
  local out=$PEERS/src/otelcol-meshlens-peer
  sed "s#^\(  output_path:\).*#\1 $out#" "$manifest" > "$PEERS/src/otelcol-builder.yaml"
  (cd "$PEERS/src" && "$PEERS/bin/builder" --config="$PEERS/src/otelcol-builder.yaml")
  install -m 0755 "$out/otelcol-meshlens-peer" "$PEERS/bin/otelcol-meshlens-peer"
  stamp_set otelcol-meshlens-peer "$want"
}

install_telemetrygen() {
  if stamp_ok telemetrygen "$TELEMETRYGEN_VERSION"; then log "telemetrygen $TELEMETRYGEN_VERSION already installed"; return; fi
  log "telemetrygen $TELEMETRYGEN_VERSION: go install"
  (cd /tmp && go install "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION") \
    && stamp_set telemetrygen "$TELEMETRYGEN_VERSION" \
    || log "telemetrygen failed to install (optional; the harness does not need it)"
}

start=$SECONDS
if [[ $# -gt 0 ]]; then
  for what in "$@"; do
    case $what in
      debs|jaeger|otelcol|telemetrygen) "install_$what" ;;
      *) echo "install-peers: unknown peer '$what' (want debs, jaeger, otelcol, telemetrygen or versions)" >&2; exit 2 ;;
    esac
  done
else
  install_debs
  install_jaeger
  install_otelcol
  if [[ ${MESHLENS_PEERS_SKIP_TELEMETRYGEN:-} != 1 ]]; then install_telemetrygen; fi
fi
log "done in $((SECONDS - start))s; $PEERS/bin:"
ls -la "$PEERS/bin"
