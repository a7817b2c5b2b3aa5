package recommend

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	istionet "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

// Istio's defaults when a VirtualService sets no retry policy: two retries
// on connection failures, refused streams and gRPC UNAVAILABLE / CANCELLED,
// and no route timeout (Istio disables Envoy's 15 s default).
const (
	IstioDefaultRetries = 2
	IstioDefaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
)

// RouteSetting is the route policy in force for calls to one destination
// service, from a VirtualService.
type RouteSetting struct {
	// Timeout is the route timeout; zero with HasTimeout false means none.
	Timeout    time.Duration
	HasTimeout bool
	// Retries, PerTryTimeout, RetryOn and Backoff come from HTTPRetry; when
	// HasRetries is false Istio's defaults apply.
	Retries       int
	PerTryTimeout time.Duration
	RetryOn       string
	Backoff       time.Duration
	HasRetries    bool
	// Resource names the VirtualService ("namespace/name") and File the file
	// it was read from.
	Resource, File string
}

// PolicySetting is the traffic policy for a destination, from a
// DestinationRule.
type PolicySetting struct {
	HasOutlierDetection bool
	Consecutive5xx      int
	RetryBudgetPercent  float64
	MinRetryConcurrency int
	HTTP2MaxRequests    int
	Resource, File      string
}

// LimitSetting is a local rate limit in force on a service's inbound
// traffic, from an EnvoyFilter's token bucket.
type LimitSetting struct {
	RatePerSecond  float64
	Burst          int
	Resource, File string
}

// CurrentConfig is the mesh configuration in force, keyed by service full
// name ("reviews.default").
type CurrentConfig struct {
	Routes   map[string]*RouteSetting
	Policies map[string]*PolicySetting
	Limits   map[string]*LimitSetting
	// HTTPRoutes holds every HTTP route of the VirtualServices, in order,
	// by destination service, for per-endpoint comparisons (EndpointRoute).
	HTTPRoutes map[string][]RouteInForce
	// Loaded says the configuration was read; an empty config that was
	// loaded means nothing is set (all Istio defaults), an unloaded one
	// means unknown.
	Loaded bool
}

// NewCurrentConfig returns an empty, unloaded configuration.
func NewCurrentConfig() *CurrentConfig {
	return &CurrentConfig{Routes: map[string]*RouteSetting{}, Policies: map[string]*PolicySetting{}, Limits: map[string]*LimitSetting{},
		HTTPRoutes: map[string][]RouteInForce{}}
}

// maxConfigFile bounds one YAML file.
const maxConfigFile = 8 << 20

// LoadIstioDir reads every .yaml/.yml file under dir and returns the
// VirtualService, DestinationRule and EnvoyFilter (local rate limit)
// settings found. Documents that cannot be parsed are reported in the
// joined error; the rest are kept.
func LoadIstioDir(dir string) (*CurrentConfig, error) {
	cfg := NewCurrentConfig()
	var errs []error
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if info.Size() > maxConfigFile {
			errs = append(errs, fmt.Errorf("%s: %d bytes exceeds the %d byte limit", path, info.Size(), maxConfigFile))
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if err := cfg.AddYAML(b, path); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Loaded = true
	return cfg, errors.Join(errs...)
}

// AddYAML adds the Istio resources of a (multi-document) YAML file. file
// names the source in errors and settings.
func (c *CurrentConfig) AddYAML(b []byte, file string) error {
	var errs []error
	for i, doc := range splitYAML(b) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, i+1, err))
			continue
		}
		if !strings.HasPrefix(meta.APIVersion, "networking.istio.io/") {
			continue
		}
		var err error
		switch meta.Kind {
		case "VirtualService":
			err = c.addVirtualService(doc, file)
		case "DestinationRule":
			err = c.addDestinationRule(doc, file)
		case "EnvoyFilter":
			err = c.addEnvoyFilter(doc, file)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d (%s): %w", file, i+1, meta.Kind, err))
		}
	}
	return errors.Join(errs...)
}

func splitYAML(b []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		// A separator line may carry a comment or trailing spaces.
		if i := bytes.IndexByte(part, '\n'); i >= 0 && len(bytes.TrimSpace(part[:i])) > 0 && bytes.HasPrefix(bytes.TrimSpace(part[:i]), []byte("#")) {
			part = part[i:]
		}
		if len(bytes.TrimSpace(part)) > 0 {
			out = append(out, part)
		}
	}
	return out
}

// hostKey turns a VirtualService / DestinationRule host into a service
// full name: "reviews" in namespace ns is "reviews.ns";
// "reviews.default.svc.cluster.local" is "reviews.default".
func hostKey(host, ns string) string {
	if ns == "" {
		ns = "default"
	}
	parts := strings.Split(host, ".")
	if len(parts) == 1 {
		return host + "." + ns
	}
	return parts[0] + "." + parts[1]
}

func dur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func (c *CurrentConfig) addVirtualService(doc []byte, file string) error {
	var vs networkingv1.VirtualService
	if err := yaml.Unmarshal(doc, &vs); err != nil {
		return err
	}
	c.addVS(&vs, file)
	return nil
}

func (c *CurrentConfig) addVS(vs *networkingv1.VirtualService, file string) {
	res := vs.Namespace + "/" + vs.Name
	if c.HTTPRoutes == nil {
		c.HTTPRoutes = map[string][]RouteInForce{}
	}
	for _, r := range vs.Spec.GetHttp() {
		rs := RouteSetting{Resource: res, File: file}
		if t := r.GetTimeout(); t != nil {
			rs.Timeout, rs.HasTimeout = dur(t), dur(t) > 0
		}
		if rt := r.GetRetries(); rt != nil {
			rs.HasRetries = true
			rs.Retries = int(rt.GetAttempts())
			rs.PerTryTimeout = dur(rt.GetPerTryTimeout())
			rs.RetryOn = rt.GetRetryOn()
			rs.Backoff = dur(rt.GetBackoff())
		} else {
			rs.Retries, rs.RetryOn = IstioDefaultRetries, IstioDefaultRetryOn
		}
		matches := routeMatches(r)
		seen := map[string]bool{}
		for _, d := range r.GetRoute() {
			host := d.GetDestination().GetHost()
			if host == "" {
				continue
			}
			k := hostKey(host, vs.Namespace)
			if !seen[k] {
				seen[k] = true
				c.HTTPRoutes[k] = append(c.HTTPRoutes[k], RouteInForce{Matches: matches, Setting: rs})
			}
			// A route for some paths only (an endpoint's) does not say what
			// the service's other requests get.
			if pathScoped(r) {
				continue
			}
			if _, ok := c.Routes[k]; ok {
				continue // the first matching route wins, as in Envoy
			}
			own := rs
			c.Routes[k] = &own
		}
	}
}

// pathScoped reports whether every match of r constrains the URI or the
// method, so that the route applies to some of a caller's requests only.
func pathScoped(r *istionet.HTTPRoute) bool {
	ms := r.GetMatch()
	if len(ms) == 0 {
		return false
	}
	for _, m := range ms {
		if m.GetUri() == nil && m.GetMethod() == nil {
			return false
		}
	}
	return true
}

func (c *CurrentConfig) addDestinationRule(doc []byte, file string) error {
	var dr networkingv1.DestinationRule
	if err := yaml.Unmarshal(doc, &dr); err != nil {
		return err
	}
	c.addDR(&dr, file)
	return nil
}

func (c *CurrentConfig) addDR(dr *networkingv1.DestinationRule, file string) {
	tp := dr.Spec.GetTrafficPolicy()
	ps := &PolicySetting{Resource: dr.Namespace + "/" + dr.Name, File: file}
	if od := tp.GetOutlierDetection(); od != nil {
		ps.HasOutlierDetection = true
		ps.Consecutive5xx = int(od.GetConsecutive_5XxErrors().GetValue())
	}
	if rb := tp.GetRetryBudget(); rb != nil {
		ps.RetryBudgetPercent = rb.GetPercent().GetValue()
		if rb.GetPercent() == nil {
			ps.RetryBudgetPercent = 20 // Envoy's default budget_percent
		}
		ps.MinRetryConcurrency = int(rb.GetMinRetryConcurrency())
	}
	ps.HTTP2MaxRequests = int(tp.GetConnectionPool().GetHttp().GetHttp2MaxRequests())
	c.Policies[hostKey(dr.Spec.GetHost(), dr.Namespace)] = ps
}

// addEnvoyFilter reads local rate limits: any patch value holding a
// token_bucket (envoy.filters.http.local_ratelimit), applied to the
// workloads the filter selects by app label.
func (c *CurrentConfig) addEnvoyFilter(doc []byte, file string) error {
	var ef networkingv1alpha3.EnvoyFilter
	if err := yaml.Unmarshal(doc, &ef); err != nil {
		return err
	}
	return c.addEF(&ef, file)
}

func (c *CurrentConfig) addEF(ef *networkingv1alpha3.EnvoyFilter, file string) error {
	app := ef.Spec.GetWorkloadSelector().GetLabels()["app"]
	if app == "" {
		return nil
	}
	for _, p := range ef.Spec.GetConfigPatches() {
		tb := findField(p.GetPatch().GetValue(), "token_bucket", 0)
		if tb == nil {
			continue
		}
		f := tb.GetStructValue().GetFields()
		tokens := f["tokens_per_fill"].GetNumberValue()
		if tokens == 0 {
			tokens = 1
		}
		interval, err := time.ParseDuration(f["fill_interval"].GetStringValue())
		if err != nil || interval <= 0 {
			return fmt.Errorf("token_bucket.fill_interval %q: want a duration such as \"1s\"", f["fill_interval"].GetStringValue())
		}
		c.Limits[hostKey(app, ef.Namespace)] = &LimitSetting{
			RatePerSecond: tokens / interval.Seconds(),
			Burst:         int(f["max_tokens"].GetNumberValue()),
			Resource:      ef.Namespace + "/" + ef.Name, File: file,
		}
	}
	return nil
}

func findField(s *structpb.Struct, name string, depth int) *structpb.Value {
	if s == nil || depth > 12 {
		return nil
	}
	for k, v := range s.GetFields() {
		if k == name {
			return v
		}
		if sv := v.GetStructValue(); sv != nil {
			if r := findField(sv, name, depth+1); r != nil {
				return r
			}
		}
	}
	return nil
}
