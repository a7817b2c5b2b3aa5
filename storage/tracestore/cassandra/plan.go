package cassandra

import (
	"slices"
	"sort"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
)

// IndexCols are the columns every index select returns, in this order.
var IndexCols = []string{"start_time", "trace_id", "span_id", "span_kind", "duration"}

// BucketScan is the reads of one hourly bucket: one select per partition
// (shard, and service when the query names none).
type BucketScan struct {
	Bucket int32
	Stmts  []Stmt
}

// Plan is how a search is answered: which index table, which partitions
// of which buckets (newest first), and whether candidate spans must be read
// to check predicates the index does not imply.
type Plan struct {
	Index *Table
	// Tag is the tag the tag index is read for (when Index is the tag
	// index).
	Tag [2]string
	// Buckets are scanned newest first.
	Buckets []BucketScan
	// Verify: a candidate span must be read and matched against the whole
	// query, because the index does not imply every predicate.
	Verify bool
}

// lowCardinalityTags are synthetic tags that match many spans; a query
// naming another tag too reads that one's index instead.
var lowCardinalityTags = map[string]bool{"error": true, "span.kind": true, "otel.status_code": true}

// PlanFind plans a normalised query (StartMin and StartMax set): for each
// bucket of the window, one select per (service, shard) partition of the
// chosen index. services is used only when q names no service (the search
// fans out over the services seen in the window).
func PlanFind(ks string, shards int, q tracestore.Query, services []string) Plan {
	p := Plan{}
	tagKeys := make([]string, 0, len(q.Tags))
	for k, v := range q.Tags {
		if len(k) <= tracestore.MaxTagLen && len(v) <= tracestore.MaxTagLen {
			tagKeys = append(tagKeys, k)
		}
	}
	sort.Slice(tagKeys, func(i, j int) bool {
		li, lj := lowCardinalityTags[tagKeys[i]], lowCardinalityTags[tagKeys[j]]
		if li != lj {
			return !li
		}
		return tagKeys[i] < tagKeys[j]
	})
	implied := q.SpanKind == "" && q.RemoteService == "" && len(q.Annotations) == 0
	switch {
	case len(tagKeys) > 0:
		p.Index = TableTagIndex
		p.Tag = [2]string{tagKeys[0], q.Tags[tagKeys[0]]}
		implied = implied && len(q.Tags) == 1 && q.Operation == ""
	case q.Operation != "":
		p.Index = TableOperationIndex
		implied = implied && len(q.Tags) == 0
	case q.DurationMin > 0 || q.DurationMax > 0:
		p.Index = TableDurationIndex
		implied = implied && len(q.Tags) == 0
	default:
		p.Index = TableServiceIndex
		implied = implied && len(q.Tags) == 0
	}
	p.Verify = !implied
	svcs := []string{q.Service}
	if q.Service == "" {
		svcs = services
	}
	for b := Bucket(q.StartMax); b >= Bucket(q.StartMin); b-- {
		bs := BucketScan{Bucket: b}
		for _, svc := range svcs {
			for sh := 0; sh < shards; sh++ {
				bs.Stmts = append(bs.Stmts, p.selectFor(ks, q, svc, b, int8(sh)))
			}
		}
		p.Buckets = append(p.Buckets, bs)
	}
	return p
}

func (p *Plan) selectFor(ks string, q tracestore.Query, svc string, b int32, sh int8) Stmt {
	var part []any
	switch p.Index {
	case TableTagIndex:
		part = []any{svc, p.Tag[0], p.Tag[1], b, sh}
	case TableOperationIndex:
		part = []any{svc, q.Operation, b, sh}
	default:
		part = []any{svc, b, sh}
	}
	var where []Cond
	if p.Index == TableDurationIndex {
		if q.DurationMin > 0 {
			where = append(where, Cond{"duration", ">=", int64(q.DurationMin)})
		}
		if q.DurationMax > 0 {
			where = append(where, Cond{"duration", "<=", int64(q.DurationMax)})
		}
	} else {
		lo, hi := clampToBucket(q.StartMin, q.StartMax, b)
		where = []Cond{{"start_time", ">=", lo}, {"start_time", "<=", hi}}
	}
	return newSelect(ks, p.Index, IndexCols, part, where, 0)
}

// clampToBucket returns the part of [min, max] inside bucket b, as unix
// nanoseconds.
func clampToBucket(minT, maxT time.Time, b int32) (int64, int64) {
	lo, hi := BucketStart(b).UnixNano(), BucketStart(b+1).UnixNano()-1
	return max(lo, minT.UnixNano()), min(hi, maxT.UnixNano())
}

// PlanTrace plans GetTrace: one partition of the spans table.
func PlanTrace(ks string, id []byte, limit int) Stmt {
	return newSelect(ks, TableSpans, []string{"span_id", "span_kind", "start_time", "span"}, []any{id}, nil, limit)
}

// PlanDays lists the metadata days covering [from, to], newest first.
func PlanDays(from, to time.Time) []int32 {
	var out []int32
	for d := Day(to); d >= Day(from); d-- {
		out = append(out, d)
	}
	return out
}

// PlanServices plans GetServices: one partition per day of the retention.
func PlanServices(ks string, days []int32) []Stmt {
	out := make([]Stmt, 0, len(days))
	for _, d := range days {
		out = append(out, newSelect(ks, TableServices, []string{"service"}, []any{d}, nil, 0))
	}
	return out
}

// PlanOperations plans GetOperations: one partition per day, the kind as
// a clustering restriction when given.
func PlanOperations(ks, service string, kind int8, days []int32) []Stmt {
	var where []Cond
	if kind >= 0 {
		where = []Cond{{"span_kind", "=", kind}}
	}
	out := make([]Stmt, 0, len(days))
	for _, d := range days {
		out = append(out, newSelect(ks, TableOperations, []string{"span_kind", "operation"}, []any{service, d}, where, 0))
	}
	return out
}

// PlanRemoteServices plans GetRemoteServices.
func PlanRemoteServices(ks, service string, days []int32) []Stmt {
	out := make([]Stmt, 0, len(days))
	for _, d := range days {
		out = append(out, newSelect(ks, TableRemoteServices, []string{"remote_service"}, []any{service, d}, nil, 0))
	}
	return out
}

// PlanTagValues plans GetTagValues.
func PlanTagValues(ks, key string, days []int32) []Stmt {
	out := make([]Stmt, 0, len(days))
	for _, d := range days {
		out = append(out, newSelect(ks, TableTagValues, []string{"tag_value"}, []any{key, d}, nil, 0))
	}
	return out
}

// DependencyCols are the columns GetDependencies reads from the service
// index.
var DependencyCols = []string{"start_time", "trace_id", "span_id", "span_kind", "parent_id"}

// PlanDependencies plans GetDependencies over (from, to]: the service
// index of every service seen, every bucket and shard of the window.
func PlanDependencies(ks string, shards int, services []string, from, to time.Time) []Stmt {
	var out []Stmt
	for b := Bucket(to); b >= Bucket(from); b-- {
		lo, hi := clampToBucket(from, to, b)
		for _, svc := range services {
			for sh := 0; sh < shards; sh++ {
				out = append(out, newSelect(ks, TableServiceIndex, DependencyCols, []any{svc, b, int8(sh)},
					[]Cond{{"start_time", ">=", lo}, {"start_time", "<=", hi}}, 0))
			}
		}
	}
	return out
}

// Partitioned reports whether every statement binds its whole partition
// key, which is what keeps every read to bounded partitions.
func Partitioned(stmts []Stmt) bool {
	return !slices.ContainsFunc(stmts, func(s Stmt) bool {
		n := len(s.Partition)
		if s.IsInsert() {
			n = len(s.Row)
		}
		return n < len(s.Table.Partition)
	})
}
