package recommend

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	istionet "istio.io/api/networking/v1alpha3"
)

// endpointMatch describes which requests an endpoint name covers, in the
// two forms the export needs: an Istio route match (Envoy compares the
// path without its query string) and a regular expression over Envoy's
// :path header (which carries the query string) for rate-limit actions.
type endpointMatch struct {
	method string // "" matches every method
	exact  string // the path, when the name has no placeholders
	regex  string // RE2 over the path without the query, otherwise
	// pathHeaderRegex matches :path including an optional query string.
	pathHeaderRegex string
}

var httpMethodRe = regexp.MustCompile(`^[A-Z]+$`)

// parseEndpoint reads an endpoint name as processors/endpoints writes it:
// "METHOD:/path" with templated segments ({id}, {param}, {rest}, or a
// configured rule's placeholder) for HTTP, "/package.Service/Method" for
// gRPC. Names that do not denote a path (TCP, or an unnamed operation)
// give an error: no route can select their requests.
func parseEndpoint(ep string) (endpointMatch, error) {
	var m endpointMatch
	path := ep
	if meth, p, ok := strings.Cut(ep, ":"); ok && httpMethodRe.MatchString(meth) {
		m.method, path = meth, p
	}
	if !strings.HasPrefix(path, "/") {
		return m, fmt.Errorf("endpoint %q: not a path (want METHOD:/path or /package.Service/Method)", ep)
	}
	if strings.ContainsAny(path, "?#") {
		return m, fmt.Errorf("endpoint %q: a query or fragment cannot be matched per route", ep)
	}
	var re strings.Builder
	templated := false
	for rest := path; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			re.WriteString(regexp.QuoteMeta(rest))
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return m, fmt.Errorf("endpoint %q: unterminated placeholder", ep)
		}
		re.WriteString(regexp.QuoteMeta(rest[:i]))
		// A placeholder stands for one path segment, except {rest}, which
		// stands for whatever follows.
		if rest[i:i+j+1] == "{rest}" {
			re.WriteString(`[^?]*`)
		} else {
			re.WriteString(`[^/?]+`)
		}
		templated = true
		rest = rest[i+j+1:]
	}
	if templated {
		m.regex = re.String()
	} else {
		m.exact = path
	}
	m.pathHeaderRegex = re.String() + `(\?.*)?`
	return m, nil
}

// istioMatch is the VirtualService match selecting the endpoint's requests
// from one calling service.
func (m endpointMatch) istioMatch(srcApp string) *istionet.HTTPMatchRequest {
	hm := &istionet.HTTPMatchRequest{SourceLabels: map[string]string{"app": srcApp}}
	if m.exact != "" {
		hm.Uri = &istionet.StringMatch{MatchType: &istionet.StringMatch_Exact{Exact: m.exact}}
	} else {
		hm.Uri = &istionet.StringMatch{MatchType: &istionet.StringMatch_Regex{Regex: m.regex}}
	}
	if m.method != "" {
		hm.Method = &istionet.StringMatch{MatchType: &istionet.StringMatch_Exact{Exact: m.method}}
	}
	return hm
}

// rateLimitAction is an Envoy RateLimit (route.v3) that emits the
// descriptor entry key=ep for requests to the endpoint, in the JSON form
// an EnvoyFilter patch carries.
func (m endpointMatch) rateLimitAction(key, ep string) map[string]any {
	headers := []any{map[string]any{"name": ":path", "string_match": map[string]any{"safe_regex": map[string]any{"regex": m.pathHeaderRegex}}}}
	if m.method != "" {
		headers = append(headers, map[string]any{"name": ":method", "string_match": map[string]any{"exact": m.method}})
	}
	return map[string]any{"actions": []any{map[string]any{"header_value_match": map[string]any{
		"descriptor_key": key, "descriptor_value": ep, "headers": headers,
	}}}}
}

// routeName makes an Istio route name from a caller and an endpoint:
// lower-case letters, digits and dashes, bounded, with the endpoint's index
// among the caller's endpoints so names stay unique after truncation.
func routeName(src string, i int, ep string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(ep) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	return fmt.Sprintf("from-%s-%d-%s", src, i, strings.TrimRight(b.String(), "-"))
}

// endpointRoutes are the routes for one caller's per-endpoint timeouts and
// retries, to be placed before the caller's service-wide route (Istio uses
// the first route that matches). Endpoints whose names cannot be matched
// are skipped and reported.
func endpointRoutes(srcApp, host string, timeouts, retries map[string]*Recommendation, edgeRetry *Recommendation) ([]*istionet.HTTPRoute, []string) {
	eps := make([]string, 0, len(timeouts)+len(retries))
	for ep := range timeouts {
		eps = append(eps, ep)
	}
	for ep := range retries {
		if timeouts[ep] == nil {
			eps = append(eps, ep)
		}
	}
	sort.Strings(eps)
	var out []*istionet.HTTPRoute
	var skipped []string
	for i, ep := range eps {
		m, err := parseEndpoint(ep)
		if err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		rt := &istionet.HTTPRoute{
			Name:  routeName(srcApp, i, ep),
			Match: []*istionet.HTTPMatchRequest{m.istioMatch(srcApp)},
			Route: []*istionet.HTTPRouteDestination{{Destination: &istionet.Destination{Host: host}}},
		}
		if t := timeouts[ep]; t != nil {
			rt.Timeout = pbDur(t.Recommended.TimeoutMs)
		}
		// The endpoint's own retry policy if it has one, else the caller's:
		// a route without retries would fall back to Istio's default of 2.
		// The caller's per-try timeout was fitted to the edge's latencies, so
		// on an endpoint with its own timeout it could cut the endpoint's
		// slower requests: only its fast-failure retries carry over.
		if r := retries[ep]; r != nil {
			rt.Retries = httpRetry(r)
		} else if rt.Retries = httpRetry(edgeRetry); rt.Retries != nil && timeouts[ep] != nil && rt.Retries.PerTryTimeout != nil {
			rt.Retries.PerTryTimeout, rt.Retries.Attempts = nil, min(rt.Retries.Attempts, 1)
		}
		out = append(out, rt)
	}
	return out, skipped
}
