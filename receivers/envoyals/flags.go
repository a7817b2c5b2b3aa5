package envoyals

import (
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
)

// flagNames are Envoy's short response flag names in Envoy's canonical
// order, which is also the field order of the ResponseFlags message; bit i
// of a flag mask stands for flagNames[i].
var flagNames = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL",
	"UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF",
	"DT", "UPE", "NC", "OM", "DF", "DR",
}

// flagMask packs the set flags into a bit mask (bit i = flagNames[i]).
func flagMask(f *accesslogv3.ResponseFlags) uint32 {
	if f == nil {
		return 0
	}
	var m uint32
	set := func(i int, b bool) {
		if b {
			m |= 1 << i
		}
	}
	set(0, f.FailedLocalHealthcheck)
	set(1, f.NoHealthyUpstream)
	set(2, f.UpstreamRequestTimeout)
	set(3, f.LocalReset)
	set(4, f.UpstreamRemoteReset)
	set(5, f.UpstreamConnectionFailure)
	set(6, f.UpstreamConnectionTermination)
	set(7, f.UpstreamOverflow)
	set(8, f.NoRouteFound)
	set(9, f.DelayInjected)
	set(10, f.FaultInjected)
	set(11, f.RateLimited)
	set(12, f.UnauthorizedDetails != nil)
	set(13, f.RateLimitServiceError)
	set(14, f.DownstreamConnectionTermination)
	set(15, f.UpstreamRetryLimitExceeded)
	set(16, f.StreamIdleTimeout)
	set(17, f.InvalidEnvoyRequestHeaders)
	set(18, f.DownstreamProtocolError)
	set(19, f.UpstreamMaxStreamDurationReached)
	set(20, f.ResponseFromCacheFilter)
	set(21, f.NoFilterConfigFound)
	set(22, f.DurationTimeout)
	set(23, f.UpstreamProtocolError)
	set(24, f.NoClusterFound)
	set(25, f.OverloadManager)
	set(26, f.DnsResolutionFailure)
	set(27, f.DownstreamRemoteReset)
	return m
}

// flagString renders a mask as Envoy does: short names joined by ",".
func flagString(m uint32) string {
	if m == 0 {
		return ""
	}
	if m&(m-1) == 0 {
		for i := range flagNames {
			if m == 1<<i {
				return flagNames[i]
			}
		}
	}
	var b strings.Builder
	for i, n := range flagNames {
		if m&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}
