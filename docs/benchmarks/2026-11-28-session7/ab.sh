#!/bin/bash
# ab.sh binA binB rounds: alternate servers on the kept store, 2 sb runs each
cd /tmp/searchbench
for r in $(seq 1 ${3:-2}); do
 for b in $1 $2; do
  BIN=$b GODEBUG=gctrace=1 /tmp/s7/serve.sh > /tmp/s7/ab-serve.log 2>&1 &
  pid=$!
  for i in $(seq 1 60); do curl -sf 127.0.0.1:16686/api/services >/dev/null && break; sleep 1; done
  sleep 15
  g0=$(grep -c "^gc" /tmp/s7/ab-serve.log)
  c0=$(awk '{print $14+$15}' /proc/$(pgrep -P $pid -f "meshlens serve" || echo $pid)/stat 2>/dev/null)
  out=$(taskset -c 0 ./sb -n 132 -lookback 3h | tail -1; taskset -c 0 ./sb -n 132 -lookback 3h | tail -1)
  g1=$(grep -c "^gc" /tmp/s7/ab-serve.log)
  c1=$(awk '{print $14+$15}' /proc/$(pgrep -P $pid -f "meshlens serve" || echo $pid)/stat 2>/dev/null)
  echo "$(basename $b) gcs=$((g1-g0)) cpu_ticks=$((c1-c0))"; echo "$out" | sed 's/^/   /'
  kill $pid; wait $pid 2>/dev/null; sleep 2
 done
done
