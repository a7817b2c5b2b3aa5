package xdspush

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/processors/recommend"
)

// Resource names. Every node is served its own service's limit under
// SharedResourceName, so one mesh-wide EnvoyFilter can point every
// sidecar at meshlens; ServiceResourceName(svc) carries the same content
// for operators who prefer one EnvoyFilter per workload.
const (
	SharedResourceName = "meshlens/local_ratelimit"
	resourcePrefix     = SharedResourceName + "/"
)

// localRateLimitTypeURL is the type of the typed_config served.
const localRateLimitTypeURL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

// ServiceResourceName is the per-service ECDS resource name of svc
// ("reviews.default").
func ServiceResourceName(svc string) string { return resourcePrefix + svc }

// Names shared with the EnvoyFilter export, so that stats and runtime
// overrides are the same whichever way the limit was applied.
const (
	statPrefix         = "http_local_rate_limiter"
	runtimeEnabledKey  = "local_rate_limit_enabled"
	runtimeEnforcedKey = "local_rate_limit_enforced"
)

// serviceLimit is what one service is served: its local rate limit, the
// endpoint limits that could not be expressed, and the content hash that
// becomes the snapshot version.
type serviceLimit struct {
	service   string
	limit     *lrlv3.LocalRateLimit
	rate      float64 // recommended req/s, 0 for the pass-through config
	endpoints int     // endpoint descriptors included
	skipped   []string
	version   string
	encoded   []byte // deterministic encoding of limit, hashed and served
}

// buildLimits turns the published rate-limit recommendations into one
// local rate limit per service: the service-wide token bucket and, per
// endpoint, a descriptor with its own bucket selected by a rate-limit
// action on the filter itself (so no route needs patching), as the
// EnvoyFilter export does.
func buildLimits(recs []recommend.Recommendation) map[string]*serviceLimit {
	svc := map[string]*recommend.Recommendation{}
	eps := map[string]map[string]*recommend.Recommendation{}
	for i := range recs {
		r := &recs[i]
		if r.Kind != recommend.KindRateLimit || r.Recommended == nil || r.Recommended.RatePerSecond <= 0 {
			continue
		}
		switch {
		case r.Edge == nil:
			svc[r.Service] = r
		case r.Edge.Endpoint != "":
			if eps[r.Service] == nil {
				eps[r.Service] = map[string]*recommend.Recommendation{}
			}
			eps[r.Service][r.Edge.Endpoint] = r
		}
	}
	out := make(map[string]*serviceLimit, len(svc))
	for name, r := range svc {
		out[name] = limitFor(name, r.Recommended, eps[name])
	}
	// Endpoint limits without a service-wide limit are not pushed: the
	// export writes none either (the service's bucket carries them).
	return out
}

func limitFor(name string, s *recommend.Setting, eps map[string]*recommend.Recommendation) *serviceLimit {
	sl := &serviceLimit{service: name, rate: s.RatePerSecond}
	l := &lrlv3.LocalRateLimit{
		StatPrefix:     statPrefix,
		TokenBucket:    tokenBucket(s),
		FilterEnabled:  fullFraction(runtimeEnabledKey),
		FilterEnforced: fullFraction(runtimeEnforcedKey),
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "x-local-rate-limit", Value: "true"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
	names := make([]string, 0, len(eps))
	for ep := range eps {
		names = append(names, ep)
	}
	sort.Strings(names)
	for _, ep := range names {
		method, re, err := recommend.EndpointRequestMatch(ep)
		if err != nil {
			sl.skipped = append(sl.skipped, err.Error())
			continue
		}
		l.Descriptors = append(l.Descriptors, &rlcommonv3.LocalRateLimitDescriptor{
			Entries:     []*rlcommonv3.RateLimitDescriptor_Entry{{Key: recommend.EndpointDescriptorKey, Value: ep}},
			TokenBucket: tokenBucket(eps[ep].Recommended),
		})
		headers := []*routev3.HeaderMatcher{{Name: ":path", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}}}}
		if method != "" {
			headers = append(headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: method}}}})
		}
		l.RateLimits = append(l.RateLimits, &routev3.RateLimit{Actions: []*routev3.RateLimit_Action{{
			ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
				DescriptorKey: recommend.EndpointDescriptorKey, DescriptorValue: ep, Headers: headers,
			}},
		}}})
		sl.endpoints++
	}
	sl.limit = l
	sl.encoded, sl.version = encode(l)
	return sl
}

// passThrough is served to a service without a recommendation (or whose
// recommendation was withdrawn): filter_enabled unset means 0% of
// requests are checked, so a limit pushed earlier is lifted rather than
// left stale in the sidecar.
func passThrough(name string) *serviceLimit {
	l := &lrlv3.LocalRateLimit{StatPrefix: statPrefix}
	sl := &serviceLimit{service: name, limit: l}
	sl.encoded, sl.version = encode(l)
	return sl
}

func tokenBucket(s *recommend.Setting) *typev3.TokenBucket {
	tokens, maxTokens, fill := recommend.EnvoyTokenBucket(s)
	return &typev3.TokenBucket{MaxTokens: uint32(maxTokens), TokensPerFill: wrapperspb.UInt32(uint32(tokens)), FillInterval: durationpb.New(fill)}
}

func fullFraction(key string) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{
		DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
		RuntimeKey:   key,
	}
}

// encode returns the deterministic encoding of l and its version: a
// hash of that encoding, so the version changes exactly when the content
// does and a recomputation that changes nothing pushes nothing.
func encode(l *lrlv3.LocalRateLimit) ([]byte, string) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(l)
	if err != nil {
		// Marshalling a message built here cannot fail; an empty
		// encoding would be rejected by Envoy and shown in the status.
		return nil, "unencodable"
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:8])
}

// extensionConfigs are the ECDS resources of sl: the same typed config
// under the shared and the per-service name.
func extensionConfigs(sl *serviceLimit) ([]*corev3.TypedExtensionConfig, error) {
	if sl.encoded == nil {
		return nil, fmt.Errorf("xdspush: local rate limit of %s could not be encoded", sl.service)
	}
	// The bytes already hashed for the version: encoding once more would
	// double the cost of a push.
	a := &anypb.Any{TypeUrl: localRateLimitTypeURL, Value: sl.encoded}
	return []*corev3.TypedExtensionConfig{
		{Name: SharedResourceName, TypedConfig: a},
		{Name: ServiceResourceName(sl.service), TypedConfig: a},
	}, nil
}
