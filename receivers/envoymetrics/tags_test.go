package envoymetrics

import (
	"reflect"
	"sort"
	"testing"
)

func TestExtract(t *testing.T) {
	x := newTagExtractor("cluster.local", []string{"istiocustom", "wasmcustom"})
	tests := []struct {
		stat string
		name string
		tags map[string]string
	}{
		{"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total",
			"envoy_cluster_upstream_rq_total",
			map[string]string{"envoy_cluster_name": "outbound|9080||reviews.default.svc.cluster.local"}},
		{"cluster.outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_503",
			"envoy_cluster_upstream_rq",
			map[string]string{"envoy_cluster_name": "outbound|9080|v2|reviews.default.svc.cluster.local", "envoy_response_code": "503"}},
		{"cluster.xds-grpc.upstream_rq_2xx",
			"envoy_cluster_upstream_rq_xx",
			map[string]string{"envoy_cluster_name": "xds-grpc", "envoy_response_code_class": "2"}},
		{"cluster.inbound|9080||.upstream_cx_active",
			"envoy_cluster_upstream_cx_active",
			map[string]string{"envoy_cluster_name": "inbound|9080||"}},
		{"cluster.BlackHoleCluster.upstream_cx_total", "envoy_cluster_upstream_cx_total",
			map[string]string{"envoy_cluster_name": "BlackHoleCluster"}},
		{"cluster.xds-grpc.circuit_breakers.default.cx_open", "envoy_cluster_circuit_breakers_default_cx_open",
			map[string]string{"envoy_cluster_name": "xds-grpc"}},
		{"cluster.grpc_svc.grpc.Greeter.SayHello.success", "envoy_cluster_grpc_success",
			map[string]string{"envoy_cluster_name": "grpc_svc", "envoy_grpc_bridge_service": "Greeter", "envoy_grpc_bridge_method": "SayHello"}},
		// As in Envoy, a dotted gRPC service name is cut at its first dot.
		{"cluster.grpc_svc.grpc.helloworld.Greeter.SayHello.success", "envoy_cluster_grpc_Greeter_success",
			map[string]string{"envoy_cluster_name": "grpc_svc", "envoy_grpc_bridge_service": "helloworld", "envoy_grpc_bridge_method": "SayHello"}},
		{"cluster.backend.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256", "envoy_cluster_ssl_ciphers",
			map[string]string{"envoy_cluster_name": "backend", "cipher_suite": "ECDHE-RSA-AES128-GCM-SHA256"}},
		{"listener.0.0.0.0_15006.downstream_cx_total", "envoy_listener_downstream_cx_total",
			map[string]string{"envoy_listener_address": "0.0.0.0_15006"}},
		{"listener.[__]_15001.downstream_cx_active", "envoy_listener_downstream_cx_active",
			map[string]string{"envoy_listener_address": "[__]_15001"}},
		{"listener.0.0.0.0_15006.http.inbound_http.downstream_rq_2xx", "envoy_listener_http_downstream_rq_xx",
			map[string]string{"envoy_listener_address": "0.0.0.0_15006", "envoy_http_conn_manager_prefix": "inbound_http", "envoy_response_code_class": "2"}},
		{"listener.0.0.0.0_15006.ssl.cipher.AES256-SHA", "envoy_listener_ssl_cipher",
			map[string]string{"envoy_listener_address": "0.0.0.0_15006", "envoy_ssl_cipher": "AES256-SHA"}},
		{"http.inbound_0.0.0.0_9080.downstream_rq_completed", "envoy_http_0_0_0_9080_downstream_rq_completed",
			map[string]string{"envoy_http_conn_manager_prefix": "inbound_0"}},
		{"http.admin.downstream_rq_404", "envoy_http_downstream_rq",
			map[string]string{"envoy_http_conn_manager_prefix": "admin", "envoy_response_code": "404"}},
		{"http.ingress.rds.local_route.config_reload", "envoy_http_rds_config_reload",
			map[string]string{"envoy_http_conn_manager_prefix": "ingress", "envoy_rds_route_config": "local_route"}},
		{"http.ingress.user_agent.ios.downstream_cx_total", "envoy_http_user_agent_downstream_cx_total",
			map[string]string{"envoy_http_conn_manager_prefix": "ingress", "envoy_http_user_agent": "ios"}},
		{"http.ingress.fault.backend.aborts_injected", "envoy_http_fault_aborts_injected",
			map[string]string{"envoy_http_conn_manager_prefix": "ingress", "envoy_fault_downstream_cluster": "backend"}},
		{"vhost.www.vcluster.other.upstream_rq_retry", "envoy_vhost_vcluster_upstream_rq_retry",
			map[string]string{"envoy_virtual_host": "www", "envoy_virtual_cluster": "other"}},
		{"tcp.mysql_proxy.downstream_cx_total", "envoy_tcp_downstream_cx_total",
			map[string]string{"envoy_tcp_prefix": "mysql_proxy"}},
		{"listener_manager.worker_1.dispatcher.loop_duration_us", "envoy_listener_manager_dispatcher_loop_duration_us",
			map[string]string{"envoy_worker_id": "worker_1"}},
		{"mongo.mongo_db.collection.users.query.total", "envoy_mongo_collection_query_total",
			map[string]string{"envoy_mongo_prefix": "mongo_db", "envoy_mongo_collection": "users"}},
		{"server.live", "envoy_server_live", nil},
		{"server.memory_allocated", "envoy_server_memory_allocated", nil},
		{"runtime.load_success", "envoy_runtime_load_success", nil},
		{"cluster_manager.active_clusters", "envoy_cluster_manager_active_clusters", nil},
		{"cluster_manager.cds.update_success", "envoy_cluster_manager_cds_update_success", nil},
		{"istiocustom.istio_requests_total.reporter=.=destination;.;source_workload=.=productpage-v1;.;response_code=.=200;.;",
			"istio_requests_total",
			map[string]string{"reporter": "destination", "source_workload": "productpage-v1", "response_code": "200"}},
		{"wasmcustom.my-metric", "my_metric", nil},
		{"9lives", "envoy_9lives", nil},
	}
	for _, tt := range tests {
		t.Run(tt.stat, func(t *testing.T) {
			name, tags := x.Extract(tt.stat)
			if name != tt.name {
				t.Errorf("name = %q, want %q", name, tt.name)
			}
			got := map[string]string{}
			for _, tg := range tags {
				got[tg.Name] = tg.Value
			}
			if tt.tags == nil {
				tt.tags = map[string]string{}
			}
			if !reflect.DeepEqual(got, tt.tags) {
				t.Errorf("tags = %v, want %v", got, tt.tags)
			}
		})
	}
}

// TestExtractOrderIndependent checks the property Envoy states for its
// default rules: they do not interfere, so applying them in reverse order
// gives the same result.
func TestExtractOrderIndependent(t *testing.T) {
	fwd := newTagExtractor("cluster.local", nil)
	rev := newTagExtractor("cluster.local", nil)
	for i, j := 0, len(rev.rules)-1; i < j; i, j = i+1, j-1 {
		rev.rules[i], rev.rules[j] = rev.rules[j], rev.rules[i]
	}
	for _, stat := range []string{
		"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_503",
		"listener.0.0.0.0_15006.http.inbound_http.downstream_rq_2xx",
		"cluster.grpc_svc.grpc.helloworld.Greeter.SayHello.success",
		"http.ingress.dynamodb.table.locations.capacity.GetItem.__partition_id=ABC1234",
		"mongo.mongo_db.collection.users.callsite.login.query.total",
	} {
		n1, t1 := fwd.Extract(stat)
		n2, t2 := rev.Extract(stat)
		sort.Slice(t1, func(i, j int) bool { return t1[i].Name < t1[j].Name })
		sort.Slice(t2, func(i, j int) bool { return t2[i].Name < t2[j].Name })
		if n1 != n2 || !reflect.DeepEqual(t1, t2) {
			t.Errorf("%s: forward %s %v, reverse %s %v", stat, n1, t1, n2, t2)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"a.b-c":   "a_b_c",
		"a:b":     "a:b",
		"1abc":    "_1abc",
		"ok_name": "ok_name",
		"":        "_",
		"ü":       "__",
	} {
		if got := sanitizeMetricName(in); got != want {
			t.Errorf("sanitizeMetricName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitizeLabelName("a:b"); got != "a_b" {
		t.Errorf("label a:b = %q", got)
	}
	if got := sanitizeLabelName("__x"); got != "x_x" {
		t.Errorf("label __x = %q", got)
	}
}
