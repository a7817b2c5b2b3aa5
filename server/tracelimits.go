package server

import "github.com/meshlens/meshlens/storage/tracestore"

// traceSearchLimits are query.traces as the Jaeger and Zipkin query APIs
// apply them; the setting names go into the errors so that a refused user
// knows which knob to turn.
func (s *Server) traceSearchLimits() tracestore.SearchLimits {
	t := s.cfg.Query.Traces
	return tracestore.SearchLimits{
		MaxRange:   t.MaxSearchRange,
		MaxResults: t.MaxResults,
		Timeout:    t.Timeout,
		Retention:  s.cfg.Storage.Traces.Retention,
		RangeKey:   "query.traces.max_search_range",
		ResultsKey: "query.traces.max_results",
		TimeoutKey: "query.traces.timeout",
	}
}
