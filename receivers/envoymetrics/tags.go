package envoymetrics

import (
	"regexp"
	"sort"
	"strings"
)

// tag is one label extracted from an Envoy stat name.
type tag struct {
	Name, Value string
}

// tagRule is one of Envoy's default tag extractors. Envoy matches each
// rule against the full stat name; the first capture group is the part cut
// out of the name, and the second (or, when there is none, the first) is
// the tag's value.
type tagRule struct {
	name string
	// prefix, when set, is a string the stat must start with for the rule
	// to apply; substr one it must contain. Both only skip regexes that
	// cannot match, as Envoy's own prefilters do.
	prefix, substr string
	re             *regexp.Regexp
}

// Envoy's default tag rules, in Envoy's order (from
// source/common/config/well_known_names.cc), rewritten for RE2: Envoy's
// `P(?=\.).*?\.Q` (a lookahead RE2 lacks) is written `P(?:\..*?)?\.Q`, which
// matches the same strings because Q's leading dot satisfies the lookahead
// when the lazy part is empty.
//
// The cluster_name rule differs from Envoy's on purpose: Envoy's
// `^cluster\.((.*?)\.)` stops at the first dot, which cuts Istio's
// "outbound|9080||reviews.default.svc.cluster.local" in two. Istio's own
// bootstrap overrides it with a rule that lets the name run to the
// ".svc.<cluster domain>" suffix; that rule is used here, with the cluster
// domain configurable.
func defaultTagRules(clusterDomain string) []tagRule {
	dom := regexp.QuoteMeta(clusterDomain)
	return []tagRule{
		{name: "envoy.response_code", substr: "_rq_", re: regexp.MustCompile(`_rq(_(\d{3}))$`)},
		{name: "envoy.response_code_class", substr: "_rq_", re: regexp.MustCompile(`_rq_(\d)xx$`)},
		{name: "envoy.dynamodb_partition_id", prefix: "http.", substr: ".dynamodb.table.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.dynamodb\.table(?:\..*?)?\.capacity(?:\..*?)?(\.__partition_id=(\w{7}))$`)},
		{name: "envoy.dynamodb_operation", prefix: "http.", substr: ".dynamodb.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.dynamodb.(?:operation|table(?:\..*?)?\.capacity)(\.(.*?))(?:\.|$)`)},
		{name: "envoy.mongo_callsite", prefix: "mongo.", substr: ".collection.",
			re: regexp.MustCompile(`^mongo(?:\..*?)?\.collection(?:\..*?)?\.callsite\.((.*?)\.).*?query.\w+?$`)},
		{name: "envoy.dynamodb_table", prefix: "http.", substr: ".dynamodb.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.dynamodb.(?:table|error)\.((.*?)\.)`)},
		{name: "envoy.mongo_collection", prefix: "mongo.", substr: ".collection.",
			re: regexp.MustCompile(`^mongo(?:\..*?)?\.collection\.((.*?)\.).*?query.\w+?$`)},
		{name: "envoy.mongo_cmd", prefix: "mongo.", substr: ".cmd.",
			re: regexp.MustCompile(`^mongo(?:\..*?)?\.cmd\.((.*?)\.)\w+?$`)},
		{name: "envoy.grpc_bridge_method", prefix: "cluster.", substr: ".grpc.",
			re: regexp.MustCompile(`^cluster(?:\..*?)?\.grpc(?:\..*)?\.((.*?)\.)\w+?$`)},
		{name: "envoy.http_user_agent", prefix: "http.", substr: ".user_agent.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.user_agent\.((.*?)\.)\w+?$`)},
		{name: "envoy.virtual_cluster", prefix: "vhost.", substr: ".vcluster.",
			re: regexp.MustCompile(`^vhost(?:\..*?)?\.vcluster\.((.*?)\.)\w+?$`)},
		{name: "envoy.fault_downstream_cluster", prefix: "http.", substr: ".fault.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.fault\.((.*?)\.)\w+?$`)},
		{name: "envoy.ssl_cipher", prefix: "listener.", substr: ".ssl.cipher.",
			re: regexp.MustCompile(`^listener(?:\..*?)?\.ssl\.cipher(\.(.*?))$`)},
		{name: "cipher_suite", prefix: "cluster.", substr: ".ssl.ciphers.",
			re: regexp.MustCompile(`^cluster(?:\..*?)?\.ssl\.ciphers(\.(.*?))$`)},
		{name: "envoy.grpc_bridge_service", prefix: "cluster.", substr: ".grpc.",
			re: regexp.MustCompile(`^cluster(?:\..*?)?\.grpc\.((.*?)\.)`)},
		{name: "envoy.tcp_prefix", prefix: "tcp.", re: regexp.MustCompile(`^tcp\.((.*?)\.)\w+?$`)},
		{name: "envoy.udp_prefix", prefix: "udp.", re: regexp.MustCompile(`^udp\.((.*?)\.)\w+?$`)},
		{name: "envoy.clientssl_prefix", prefix: "auth.clientssl.", re: regexp.MustCompile(`^auth\.clientssl\.((.*?)\.)\w+?$`)},
		{name: "envoy.ratelimit_prefix", prefix: "ratelimit.", re: regexp.MustCompile(`^ratelimit\.((.*?)\.)\w+?$`)},
		{name: "envoy.cluster_name", prefix: "cluster.",
			re: regexp.MustCompile(`^cluster\.((.+?(?:\..+?\.svc\.` + dom + `)?)\.)`)},
		{name: "envoy.http_conn_manager_prefix", substr: "http.",
			re: regexp.MustCompile(`^(?:|listener(?:\..*?)?\.)http\.((.*?)\.)`)},
		{name: "envoy.listener_address", prefix: "listener.",
			re: regexp.MustCompile(`^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`)},
		{name: "envoy.virtual_host", prefix: "vhost.", re: regexp.MustCompile(`^vhost\.((.*?)\.)`)},
		{name: "envoy.mongo_prefix", prefix: "mongo.", re: regexp.MustCompile(`^mongo\.((.*?)\.)`)},
		{name: "envoy.rds_route_config", prefix: "http.", substr: ".rds.",
			re: regexp.MustCompile(`^http(?:\..*?)?\.rds\.((.*?)\.)\w+?$`)},
		{name: "envoy.scoped_rds_config", prefix: "scoped_rds.", re: regexp.MustCompile(`^scoped_rds\.((.*?)\.)`)},
		{name: "envoy.worker_id", prefix: "listener_manager.", re: regexp.MustCompile(`^listener_manager\.((worker_\d+)\.)`)},
	}
}

// istioTag matches Istio's in-name tags, "key=.=value;.;", which Istio's
// bootstrap extracts with one rule per key (`(reporter=\.=(.*?);\.;)`); here
// one rule covers every key.
var istioTag = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)=\.=(.*?);\.;`)

// tagExtractor turns Envoy stat names into Prometheus names and labels the
// way Envoy's own /stats/prometheus endpoint does.
type tagExtractor struct {
	rules []tagRule
	// customNamespaces are stat prefixes (Istio's "istiocustom", Wasm's
	// "wasmcustom") that Envoy strips instead of prefixing "envoy_".
	customNamespaces []string
}

func newTagExtractor(clusterDomain string, customNamespaces []string) *tagExtractor {
	return &tagExtractor{rules: defaultTagRules(clusterDomain), customNamespaces: customNamespaces}
}

type span struct{ start, end int }

// Extract returns the Prometheus metric name of the stat and the tags
// extracted from it (with Prometheus-safe label names), in a stable order.
func (x *tagExtractor) Extract(stat string) (string, []tag) {
	var (
		tags []tag
		cut  []span
	)
	seen := map[string]bool{}
	// Custom-namespace stats (Istio's standard metrics) carry their labels
	// in the name; Envoy's default rules do not apply to them.
	rest, custom := x.customNamespace(stat)
	if custom {
		for _, m := range istioTag.FindAllStringSubmatchIndex(rest, -1) {
			name := sanitizeLabelName(rest[m[2]:m[3]])
			if seen[name] {
				continue
			}
			seen[name] = true
			tags = append(tags, tag{Name: name, Value: rest[m[4]:m[5]]})
			cut = append(cut, span{m[0], m[1]})
		}
		base := strings.Trim(removeSpans(rest, cut), "._")
		return sanitizeMetricName(base), tags
	}
	for i := range x.rules {
		r := &x.rules[i]
		if r.prefix != "" && !strings.HasPrefix(stat, r.prefix) {
			continue
		}
		if r.substr != "" && !strings.Contains(stat, r.substr) {
			continue
		}
		if seen[r.name] {
			continue
		}
		m := r.re.FindStringSubmatchIndex(stat)
		if m == nil || m[2] < 0 {
			continue
		}
		vs, ve := m[2], m[3]
		if len(m) > 4 && m[4] >= 0 {
			vs, ve = m[4], m[5]
		}
		seen[r.name] = true
		tags = append(tags, tag{Name: sanitizeLabelName(r.name), Value: stat[vs:ve]})
		cut = append(cut, span{m[2], m[3]})
	}
	// Istio's in-name tags may also appear on non-custom stats when a
	// bootstrap adds them to Envoy's stats; take them too.
	if strings.Contains(stat, "=.=") {
		for _, m := range istioTag.FindAllStringSubmatchIndex(stat, -1) {
			name := sanitizeLabelName(stat[m[2]:m[3]])
			if seen[name] {
				continue
			}
			seen[name] = true
			tags = append(tags, tag{Name: name, Value: stat[m[4]:m[5]]})
			cut = append(cut, span{m[0], m[1]})
		}
	}
	base := strings.Trim(removeSpans(stat, cut), ".")
	return sanitizeMetricName("envoy_" + base), tags
}

// customNamespace strips a registered custom namespace from stat.
func (x *tagExtractor) customNamespace(stat string) (rest string, ok bool) {
	dot := strings.IndexByte(stat, '.')
	if dot <= 0 {
		return stat, false
	}
	for _, n := range x.customNamespaces {
		if stat[:dot] == n {
			return stat[dot+1:], true
		}
	}
	return stat, false
}

// removeSpans returns s without the (possibly overlapping) spans.
func removeSpans(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var b strings.Builder
	b.Grow(len(s))
	pos := 0
	for _, sp := range spans {
		if sp.start > pos {
			b.WriteString(s[pos:sp.start])
		}
		if sp.end > pos {
			pos = sp.end
		}
	}
	if pos < len(s) {
		b.WriteString(s[pos:])
	}
	return b.String()
}

// sanitizeMetricName maps every character outside [a-zA-Z0-9_:] to '_' and
// prefixes '_' when the name would start with a digit.
func sanitizeMetricName(s string) string {
	return sanitize(s, true)
}

// sanitizeLabelName is sanitizeMetricName without ':' (not allowed in label
// names), and never yields a reserved "__" prefix.
func sanitizeLabelName(s string) string {
	out := sanitize(s, false)
	if strings.HasPrefix(out, "__") {
		out = "x" + out[1:]
	}
	return out
}

func sanitize(s string, colon bool) string {
	if s == "" {
		return "_"
	}
	ok := func(i int, c byte) bool {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			return true
		case c >= '0' && c <= '9':
			return i > 0
		case c == ':':
			return colon
		}
		return false
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !ok(i, s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s)+1)
	if s[0] >= '0' && s[0] <= '9' {
		b = append(b, '_')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ok(len(b), c) {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}
