// Package cassandra is a tracestore backend on Apache Cassandra (4.1/5.0)
// through gocql. Query planning and statement generation are pure
// functions over the table definitions below (plan.go, writer.go), and the
// driver is reached only through the narrow Session interface, so the whole
// store runs in unit tests against an in-memory fake with Cassandra's
// partition and clustering semantics.
//
// The schema (deploy/cassandra/schema/v001.cql) keeps every partition
// bounded: spans are partitioned by trace (a trace is capped at
// MaxSpansPerTrace spans), every index partition by (…, hourly bucket,
// shard), and every metadata partition by (…, day).
package cassandra

import (
	"hash/fnv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// ColType is a CQL column type this store uses.
type ColType int

// Column types.
const (
	Text ColType = iota
	Blob
	BigInt
	Int
	TinyInt
)

// CQL returns the type's CQL name.
func (c ColType) CQL() string {
	return [...]string{"text", "blob", "bigint", "int", "tinyint"}[c]
}

// Column is one column of a table.
type Column struct {
	Name string
	Type ColType
}

// Table describes one table: its partition key, its clustering columns
// (in order; Desc marks descending clustering order on the first) and its
// other columns. The fake session and the planner both work from it.
type Table struct {
	Name       string
	Partition  []Column
	Clustering []Column
	// DescFirst: the first clustering column is ordered DESC (newest first).
	DescFirst bool
	Values    []Column
}

// Columns returns every column, partition key first.
func (t *Table) Columns() []Column {
	out := append([]Column{}, t.Partition...)
	out = append(out, t.Clustering...)
	return append(out, t.Values...)
}

// Col returns the named column.
func (t *Table) Col(name string) (Column, bool) {
	for _, c := range t.Columns() {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

var (
	colTrace    = Column{"trace_id", Blob}
	colSpan     = Column{"span_id", Blob}
	colKind     = Column{"span_kind", TinyInt}
	colStart    = Column{"start_time", BigInt} // unix nanoseconds
	colDuration = Column{"duration", BigInt}   // nanoseconds
	colService  = Column{"service", Text}
	colBucket   = Column{"bucket", Int} // unix hours
	colShard    = Column{"shard", TinyInt}
	colDay      = Column{"day", Int} // unix days
	colOp       = Column{"operation", Text}
	colParent   = Column{"parent_id", Blob}
)

// Tables of schema version 1. schema_test.go checks them against
// deploy/cassandra/schema/v001.cql.
var (
	// TableSpans holds one row per span: its resource, scope and span as
	// a ptrace protobuf. The clustering key is the span identity, so a
	// rewrite replaces the row (idempotent writes).
	TableSpans = &Table{Name: "spans",
		Partition:  []Column{colTrace},
		Clustering: []Column{colSpan, colKind, colStart},
		Values:     []Column{colService, colParent, {"span", Blob}},
	}
	// TableServiceIndex: every span of a service, newest first; carries
	// what dependency linking needs (span, parent, kind) so dependencies
	// are computed without reading spans.
	TableServiceIndex = &Table{Name: "service_index",
		Partition:  []Column{colService, colBucket, colShard},
		Clustering: []Column{colStart, colTrace, colSpan, colKind},
		DescFirst:  true,
		Values:     []Column{colDuration, colParent},
	}
	// TableOperationIndex: spans of a service and span name.
	TableOperationIndex = &Table{Name: "operation_index",
		Partition:  []Column{colService, colOp, colBucket, colShard},
		Clustering: []Column{colStart, colTrace, colSpan, colKind},
		DescFirst:  true,
		Values:     []Column{colDuration},
	}
	// TableTagIndex: spans of a service holding a tag; the duration column
	// lets a tag search apply duration bounds without reading spans.
	TableTagIndex = &Table{Name: "tag_index",
		Partition:  []Column{colService, {"tag_key", Text}, {"tag_value", Text}, colBucket, colShard},
		Clustering: []Column{colStart, colTrace, colSpan, colKind},
		DescFirst:  true,
		Values:     []Column{colDuration},
	}
	// TableDurationIndex: spans of a service ordered by duration, so a
	// duration range is a clustering range.
	TableDurationIndex = &Table{Name: "duration_index",
		Partition:  []Column{colService, colBucket, colShard},
		Clustering: []Column{colDuration, colStart, colTrace, colSpan, colKind},
		Values:     []Column{colOp},
	}
	// TableServices lists the services seen per day.
	TableServices = &Table{Name: "services",
		Partition:  []Column{colDay},
		Clustering: []Column{colService},
	}
	// TableOperations lists a service's span names per day.
	TableOperations = &Table{Name: "operations",
		Partition:  []Column{colService, colDay},
		Clustering: []Column{colKind, colOp},
	}
	// TableRemoteServices lists a service's peer.service values per day.
	TableRemoteServices = &Table{Name: "remote_services",
		Partition:  []Column{colService, colDay},
		Clustering: []Column{{"remote_service", Text}},
	}
	// TableTagValues lists the values of autocomplete tag keys per day.
	TableTagValues = &Table{Name: "tag_values",
		Partition:  []Column{{"tag_key", Text}, colDay},
		Clustering: []Column{{"tag_value", Text}},
	}
)

// Tables lists every table of the current schema version.
var Tables = []*Table{TableSpans, TableServiceIndex, TableOperationIndex, TableTagIndex, TableDurationIndex,
	TableServices, TableOperations, TableRemoteServices, TableTagValues}

// Bucket is the hourly index bucket of t.
func Bucket(t time.Time) int32 { return int32(t.Unix() / 3600) }

// BucketStart is the first instant of bucket b.
func BucketStart(b int32) time.Time { return time.Unix(int64(b)*3600, 0) }

// Day is the metadata day of t.
func Day(t time.Time) int32 { return int32(t.Unix() / 86400) }

// Shard spreads one bucket of an index over n partitions by trace id, so
// a busy service's hour is n partitions rather than one.
func Shard(id pcommon.TraceID, n int) int8 {
	h := fnv.New32a()
	h.Write(id[:])
	return int8(h.Sum32() % uint32(n))
}
