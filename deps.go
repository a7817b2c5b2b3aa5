//go:build deps

// Package meshlens pins the modules that packages added in parallel will
// import, so that go.mod changes in one place. It is never built.
package meshlens

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	_ "github.com/gocql/gocql"
	_ "github.com/golang/snappy"
	_ "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	_ "github.com/openzipkin/zipkin-go/model"
	_ "github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	_ "github.com/openzipkin/zipkin-go/reporter/http"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/prometheus/promql"
	_ "github.com/prometheus/prometheus/storage/remote"
	_ "github.com/prometheus/prometheus/tsdb"
	_ "go.opentelemetry.io/collector/pdata/ptrace"
	_ "go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "google.golang.org/grpc"
	_ "gopkg.in/yaml.v3"
	_ "istio.io/client-go/pkg/apis/networking/v1"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes/fake"
)
