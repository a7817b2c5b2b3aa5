package recommend

import "time"

// EnvoyTokenBucket is the token bucket of Envoy's local rate limit for s,
// the same numbers the EnvoyFilter export writes: tokens per fill, the
// fill interval and the bucket size (the burst, at least one fill).
func EnvoyTokenBucket(s *Setting) (tokensPerFill, maxTokens int, fill time.Duration) {
	tokens, interval, maxTokens := tokenBucket(s)
	fill = time.Second
	if interval == "0.100s" {
		fill = 100 * time.Millisecond
	}
	return tokens, maxTokens, fill
}

// EndpointDescriptorKey is the rate-limit descriptor key naming an
// endpoint in the local rate limits meshlens writes.
const EndpointDescriptorKey = endpointDescriptorKey

// EndpointRequestMatch says which requests an endpoint name ("GET:/items/{id}",
// "/pkg.Svc/Method") covers, as Envoy header matchers take it: method is
// "" for every method, pathRegex is an RE2 regular expression over the
// :path header (query string allowed). Names that denote no path give an
// error.
func EndpointRequestMatch(ep string) (method, pathRegex string, err error) {
	m, err := parseEndpoint(ep)
	if err != nil {
		return "", "", err
	}
	return m.method, m.pathHeaderRegex, nil
}
