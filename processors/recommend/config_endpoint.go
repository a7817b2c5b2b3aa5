package recommend

import (
	"regexp"
	"strings"

	istionet "istio.io/api/networking/v1alpha3"
)

// RouteInForce is one HTTP route of a VirtualService, kept in order so that
// the diff can tell which route Envoy would pick for an endpoint's requests
// from a given caller (the first whose match selects them).
type RouteInForce struct {
	// Matches are the route's match conditions (any one selects); none
	// means every request.
	Matches []RouteMatch
	Setting RouteSetting
}

// RouteMatch is the part of an Istio HTTPMatchRequest the diff
// understands.
type RouteMatch struct {
	SourceApp                     string // sourceLabels app; "" any caller
	Method                        string // exact method; "" any
	URIExact, URIPrefix, URIRegex string // at most one is set; none: any path
	// Other is set when the match constrains something else too (headers,
	// ports, other labels, gateways, non-exact methods): whether it selects
	// an endpoint's requests is not known, so it is taken not to.
	Other bool
}

func routeMatches(r *istionet.HTTPRoute) []RouteMatch {
	var out []RouteMatch
	for _, m := range r.GetMatch() {
		rm := RouteMatch{}
		for k, v := range m.GetSourceLabels() {
			if k == "app" {
				rm.SourceApp = v
			} else {
				rm.Other = true
			}
		}
		if u := m.GetUri(); u != nil {
			rm.URIExact, rm.URIPrefix, rm.URIRegex = u.GetExact(), u.GetPrefix(), u.GetRegex()
		}
		if me := m.GetMethod(); me != nil {
			if rm.Method = me.GetExact(); rm.Method == "" {
				rm.Other = true
			}
		}
		if len(m.GetHeaders()) > 0 || len(m.GetQueryParams()) > 0 || m.GetPort() != 0 || len(m.GetGateways()) > 0 ||
			m.GetScheme() != nil || m.GetAuthority() != nil || len(m.GetWithoutHeaders()) > 0 || m.GetSourceNamespace() != "" {
			rm.Other = true
		}
		out = append(out, rm)
	}
	return out
}

// selects reports whether the match certainly selects requests to the
// endpoint m from the caller whose app label is app.
func (rm RouteMatch) selects(app string, m endpointMatch) bool {
	if rm.Other || rm.SourceApp != "" && rm.SourceApp != app || rm.Method != "" && rm.Method != m.method {
		return false
	}
	switch {
	case rm.URIExact != "":
		return m.exact == rm.URIExact
	case rm.URIPrefix != "":
		if m.exact != "" {
			return strings.HasPrefix(m.exact, rm.URIPrefix)
		}
		return rm.URIPrefix == "/"
	case rm.URIRegex != "":
		if m.regex != "" {
			return m.regex == rm.URIRegex
		}
		re, err := regexp.Compile("^(?:" + rm.URIRegex + ")$")
		return err == nil && re.MatchString(m.exact)
	}
	return true
}

// EndpointRoute returns the route in force for the requests of endpoint ep
// of service svc from the caller whose app label is app: the first route
// of the service's VirtualServices that selects them, and whether that
// route is scoped to some paths or methods (an endpoint route) rather than
// service-wide. It returns nil when no route selects them (Istio's
// defaults apply) or ep cannot be matched.
func (c *CurrentConfig) EndpointRoute(svc, app, ep string) (rs *RouteSetting, scoped bool) {
	m, err := parseEndpoint(ep)
	if err != nil {
		return nil, false
	}
	for i := range c.HTTPRoutes[svc] {
		r := &c.HTTPRoutes[svc][i]
		if len(r.Matches) == 0 {
			return &r.Setting, false
		}
		for _, rm := range r.Matches {
			if rm.selects(app, m) {
				return &r.Setting, rm.Method != "" || rm.URIExact != "" || rm.URIPrefix != "" || rm.URIRegex != ""
			}
		}
	}
	return nil, false
}
