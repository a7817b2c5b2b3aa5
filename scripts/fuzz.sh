#!/usr/bin/env bash
# Runs every Go fuzz test in the module in turn, FUZZTIME each (default 60s).
# With CORPUS=1, copies up to CORPUS_MAX (default 20) of the inputs each
# fuzzer found (go test -fuzz keeps them in the build cache) into the
# package's testdata/fuzz/<FuzzName>/, so that `go test` replays them.
# FUZZ=regexp restricts the fuzzers run; PARALLEL sets -parallel (default 1:
# the machine is shared). MINIMIZE bounds the minimization of each new input
# (default 5s; Go's 60s default let one large JSON or protobuf input eat a
# whole short run while the progress line showed no executions). A summary line per fuzzer goes to stdout and the
# whole log to ${FUZZLOG:-/tmp/meshlens-fuzz.log}.
set -u
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
PARALLEL=${PARALLEL:-1}
MINIMIZE=${MINIMIZE:-5s}
CORPUS=${CORPUS:-0}
CORPUS_MAX=${CORPUS_MAX:-20}
FILTER=${FUZZ:-.}
LOG=${FUZZLOG:-/tmp/meshlens-fuzz.log}
cache=$($GO env GOCACHE)/fuzz
module=$($GO list -m)
: >"$LOG"
failed=0
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	echo "$name" | grep -Eq "$FILTER" || continue
	pkg="$module/${dir#./}"
	out=$($GO test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$MINIMIZE" -parallel="$PARALLEL" "$dir" 2>&1)
	rc=$?
	printf '=== %s %s\n%s\n' "$dir" "$name" "$out" >>"$LOG"
	# The last progress line holds the totals: "execs: N (r/sec), new interesting: M (total: T)".
	last=$(printf '%s\n' "$out" | grep -E 'fuzz: elapsed' | tail -1)
	execs=$(printf '%s\n' "$last" | sed -nE 's/.*execs: ([0-9]+).*/\1/p')
	total=$(printf '%s\n' "$last" | sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p')
	status=ok
	if [ $rc -ne 0 ]; then
		status=FAIL
		failed=1
	fi
	printf '%-45s %-28s %s execs=%s corpus=%s\n' "$dir" "$name" "$status" "${execs:-?}" "${total:-?}"
	if [ "$CORPUS" = 1 ] && [ -d "$cache/$pkg/$name" ]; then
		dst="$dir/testdata/fuzz/$name"
		mkdir -p "$dst"
		have=$(find "$dst" -type f | wc -l)
		room=$((CORPUS_MAX - have))
		if [ $room -gt 0 ]; then
			# Spread the picks over input sizes rather than taking the first few.
			ls -S "$cache/$pkg/$name" | awk -v n="$room" '{a[NR]=$0} END {if (NR<=n) {for (i=1;i<=NR;i++) print a[i]} else {for (i=0;i<n;i++) print a[int(i*NR/n)+1]}}' |
				while read -r f; do cp -n "$cache/$pkg/$name/$f" "$dst/"; done
		fi
	fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sed -E 's/^([^:]*):[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*/\1:\2/' | sort)
exit $failed
