#!/bin/bash
# Measures Jaeger HTTP API latency (search shapes and trace by id) against a
# meshlens holding the store TestLoad fills (services svc-00..svc-19, 72 h of
# data ending at the time in <store>/load-now.txt):
#
#   MESHLENS_TRACESTORE_LOAD=10000000 MESHLENS_TRACESTORE_LOAD_DIR=/data/ts \
#     go test -run '^TestLoad$' ./storage/tracestore/pebblestore
#   mkdir srv && ln -s /data/ts srv/traces
#   taskset -c 1 bin/meshlens serve --storage.path=srv --storage.traces.retention=96h --listen.http=127.0.0.1:16686 ...
#   taskset -c 0 scripts/jaeger-query-latency.sh http://127.0.0.1:16686 /data/ts/load-now.txt
set -euo pipefail
B=${1:?base URL}
END=$(date -d "$(cat "${2:?load-now.txt}")" +%s%6N)
N=${N:-100}
H1=$((END - 3600000000))
H72=$((END - 72 * 3600000000))
pct() { sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<NR*0.99) i++; printf "p50 %.1f ms  p99 %.1f ms  max %.1f ms (n=%d)\n", a[int(NR*0.5)+1]*1000, a[i]*1000, a[NR]*1000, NR}'; }
run() {
	local name=$1 url=$2
	for _ in $(seq 1 "$N"); do
		s=$(printf "svc-%02d" $((RANDOM % 20)))
		curl -sf -o /dev/null -w '%{time_total}\n' "$B${url//SVC/$s}"
	done | pct | sed "s/^/$name: /"
}
run "service, last 1h" "/api/traces?service=SVC&start=$H1&end=$END&limit=20"
run "service, 72h" "/api/traces?service=SVC&start=$H72&end=$END&limit=20"
run "service+operation, 1h" "/api/traces?service=SVC&operation=GET%20%2Fapi%2Fv1%2Fresource03%2F%7Bid%7D&start=$H1&end=$END&limit=20"
run "service+tag, 1h" "/api/traces?service=SVC&tags=%7B%22http.method%22%3A%22PUT%22%7D&start=$H1&end=$END&limit=20"
run "service+tag+minDuration, 1h" "/api/traces?service=SVC&tags=%7B%22http.method%22%3A%22GET%22%7D&minDuration=40ms&start=$H1&end=$END&limit=20"
run "service+error+minDuration, 72h" "/api/traces?service=SVC&tags=%7B%22error%22%3A%22true%22%7D&minDuration=10ms&start=$H72&end=$END&limit=20"
run "service+minDuration 80ms, 72h" "/api/traces?service=SVC&minDuration=80ms&start=$H72&end=$END&limit=20"
ids=$(curl -sf "$B/api/traces?service=svc-05&start=$H72&end=$END&limit=200" | grep -o '"traceID":"[0-9a-f]*"' | sort -u | cut -d'"' -f4)
for id in $ids; do
	curl -sf -o /dev/null -w '%{time_total}\n' "$B/api/traces/$id"
done | pct | sed "s/^/trace by id: /"
