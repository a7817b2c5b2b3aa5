package xdspush_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/processors/recommend"
	"github.com/meshlens/meshlens/processors/recommend/xdspush"
)

// staticSource publishes fixed recommendations, recomputed once.
type staticSource []recommend.Recommendation

func (s staticSource) Recommendations(recommend.Filter) []recommend.Recommendation { return s }
func (s staticSource) LastRecompute() time.Time                                    { return time.Unix(1, 0) }

// The configuration a reviews sidecar receives for a 120 req/s service
// limit (burst 24) and a 30 req/s limit on one endpoint, as the dry-run
// endpoint shows it.
func ExamplePusher_Status() {
	p := xdspush.New(xdspush.Config{DryRun: true}, staticSource{
		{ID: "ratelimit:reviews.default", Kind: recommend.KindRateLimit, Service: "reviews.default",
			Recommended: &recommend.Setting{RatePerSecond: 120, Burst: 24}},
		{ID: "ratelimit:reviews.default:GET:/reviews/{id}", Kind: recommend.KindRateLimit, Service: "reviews.default",
			Edge:        &recommend.Edge{Destination: "reviews.default", Endpoint: "GET:/reviews/{id}"},
			Recommended: &recommend.Setting{RatePerSecond: 30, Burst: 6}},
	}, nil)
	p.Sync()
	st, err := p.Status("reviews")
	if err != nil {
		panic(err)
	}
	svc := st.Services[0]
	var out bytes.Buffer
	if err := json.Indent(&out, svc.TypedConfig, "", "  "); err != nil {
		panic(err)
	}
	fmt.Println(svc.ResourceNames)
	fmt.Println(out.String())
	// Output:
	// [meshlens/local_ratelimit meshlens/local_ratelimit/reviews.default]
	// {
	//   "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
	//   "stat_prefix": "http_local_rate_limiter",
	//   "token_bucket": {
	//     "max_tokens": 24,
	//     "tokens_per_fill": 12,
	//     "fill_interval": "0.100s"
	//   },
	//   "filter_enabled": {
	//     "default_value": {
	//       "numerator": 100
	//     },
	//     "runtime_key": "local_rate_limit_enabled"
	//   },
	//   "filter_enforced": {
	//     "default_value": {
	//       "numerator": 100
	//     },
	//     "runtime_key": "local_rate_limit_enforced"
	//   },
	//   "response_headers_to_add": [
	//     {
	//       "header": {
	//         "key": "x-local-rate-limit",
	//         "value": "true"
	//       },
	//       "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
	//     }
	//   ],
	//   "descriptors": [
	//     {
	//       "entries": [
	//         {
	//           "key": "meshlens_endpoint",
	//           "value": "GET:/reviews/{id}"
	//         }
	//       ],
	//       "token_bucket": {
	//         "max_tokens": 6,
	//         "tokens_per_fill": 3,
	//         "fill_interval": "0.100s"
	//       }
	//     }
	//   ],
	//   "rate_limits": [
	//     {
	//       "actions": [
	//         {
	//           "header_value_match": {
	//             "descriptor_value": "GET:/reviews/{id}",
	//             "descriptor_key": "meshlens_endpoint",
	//             "headers": [
	//               {
	//                 "name": ":path",
	//                 "string_match": {
	//                   "safe_regex": {
	//                     "regex": "/reviews/[^/?]+(\\?.*)?"
	//                   }
	//                 }
	//               },
	//               {
	//                 "name": ":method",
	//                 "string_match": {
	//                   "exact": "GET"
	//                 }
	//               }
	//             ]
	//           }
	//         }
	//       ]
	//     }
	//   ]
	// }
}
