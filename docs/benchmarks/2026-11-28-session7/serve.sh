#!/bin/bash
# serve the kept 10M store on loopback, pinned to CPU 1
D=/tmp/meshlens-benchpeers3362588688/meshlens-query-4008178676
BIN=${BIN:-/work/main/bin/meshlens}
exec taskset -c 1 $BIN serve --storage.path=$D --listen.http=127.0.0.1:16686 --listen.grpc=127.0.0.1:0 --listen.otlp_grpc=127.0.0.1:0 --listen.otlp_http=127.0.0.1:0 --listen.zipkin=127.0.0.1:0 --listen.pprof=127.0.0.1:6061 --receivers.jaeger.enabled=false "$@"
