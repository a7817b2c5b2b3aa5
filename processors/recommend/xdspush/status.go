package xdspush

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// Status is what the pusher serves, or would serve in dry-run mode.
type Status struct {
	Enabled bool `json:"enabled"`
	DryRun  bool `json:"dry_run"`
	// Serving is true when resources are actually sent to Envoy.
	Serving    bool            `json:"serving"`
	TypeURL    string          `json:"type_url,omitempty"`
	Generation int             `json:"generation"`
	Services   []ServiceConfig `json:"services"`
	// History holds the recent pushes, newest first.
	History []Push       `json:"history"`
	Nodes   []NodeStatus `json:"nodes"`
}

// ServiceConfig is one service's served (or would-be) configuration.
type ServiceConfig struct {
	Service       string   `json:"service"`
	Version       string   `json:"version"`
	ResourceNames []string `json:"resource_names"`
	// RatePerSecond is the service-wide limit; 0 is the pass-through config.
	RatePerSecond  float64 `json:"rate_per_second"`
	EndpointLimits int     `json:"endpoint_limits,omitempty"`
	// NotPushed lists endpoint limits that cannot be expressed (endpoint
	// names that denote no path).
	NotPushed []string `json:"not_pushed,omitempty"`
	// TypedConfig is the LocalRateLimit in Envoy's JSON form.
	TypedConfig json.RawMessage `json:"typed_config"`
}

// Status returns the current state; service, if set, keeps only that
// service ("reviews.default" or "reviews") and its nodes.
func (p *Pusher) Status(service string) (Status, error) {
	st := Status{Enabled: true, DryRun: p.cfg.DryRun, Serving: !p.cfg.DryRun, TypeURL: TypeURL}
	p.mu.RLock()
	st.Generation = p.generation
	limits := make([]*serviceLimit, 0, len(p.served))
	for _, sl := range p.served {
		if svcMatch(service, sl.service) {
			limits = append(limits, sl)
		}
	}
	st.History = make([]Push, 0, len(p.history))
	for i := len(p.history) - 1; i >= 0; i-- {
		st.History = append(st.History, p.history[i])
	}
	p.mu.RUnlock()
	sort.Slice(limits, func(i, j int) bool { return limits[i].service < limits[j].service })
	st.Services = make([]ServiceConfig, 0, len(limits))
	for _, sl := range limits {
		a, err := anypb.New(sl.limit)
		if err != nil {
			return Status{}, err
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
		if err != nil {
			return Status{}, err
		}
		st.Services = append(st.Services, ServiceConfig{Service: sl.service, Version: sl.version,
			ResourceNames: []string{SharedResourceName, ServiceResourceName(sl.service)},
			RatePerSecond: sl.rate, EndpointLimits: sl.endpoints, NotPushed: sl.skipped, TypedConfig: b})
	}
	p.nodesMu.Lock()
	st.Nodes = make([]NodeStatus, 0, len(p.nodes))
	for _, n := range p.nodes {
		if svcMatch(service, n.Service) {
			st.Nodes = append(st.Nodes, *n)
		}
	}
	p.nodesMu.Unlock()
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	return st, nil
}

func svcMatch(want, name string) bool {
	return want == "" || want == name || strings.HasPrefix(name, want+".")
}

// Handler serves the pusher's Status as JSON (GET, ?service= to filter).
// p may be nil: xds_push is off, and the handler says so.
func Handler(p *Pusher) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if p == nil {
			_ = json.NewEncoder(w).Encode(map[string]any{"enabled": false,
				"hint": "set processors.recommendations.xds_push.enabled (dry_run stays on until you turn it off)"})
			return
		}
		st, err := p.Status(r.URL.Query().Get("service"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
}
