package cassandra

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	reCreate  = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) \((.*)\)\s*(WITH.*)?$`)
	reCol     = regexp.MustCompile(`^\s*(\w+) (\w+),$`)
	rePK      = regexp.MustCompile(`PRIMARY KEY \(\(([^)]*)\)((?:, \w+)*)\)`)
	reOrder   = regexp.MustCompile(`CLUSTERING ORDER BY \(([^)]*)\)`)
	reTTL     = regexp.MustCompile(`default_time_to_live = (\d+)`)
	reCompact = regexp.MustCompile(`'class': 'TimeWindowCompactionStrategy'`)
)

// TestSchemaMatchesTables checks deploy/cassandra/schema/v001.cql against
// the table definitions the planner, the writer and the fake use: columns
// and types, partition key, clustering columns and order, TWCS and a TTL.
func TestSchemaMatchesTables(t *testing.T) {
	files, err := SchemaFiles(MigrateConfig{Keyspace: "ks", TTL: 48 * time.Hour, MetadataTTL: 96 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 || files[0].Version != 1 {
		t.Fatalf("schema files = %+v", files)
	}
	seen := map[string]bool{}
	for _, st := range files[0].Statements {
		m := reCreate.FindStringSubmatch(st)
		if m == nil {
			if !strings.HasPrefix(st, "CREATE KEYSPACE IF NOT EXISTS ks") {
				t.Errorf("unexpected statement %q", st)
			}
			continue
		}
		if m[1] != "ks" {
			t.Errorf("table %s in keyspace %s", m[2], m[1])
		}
		name := m[2]
		seen[name] = true
		if name == migrationsTable.Name {
			continue
		}
		idx := slices.IndexFunc(Tables, func(tb *Table) bool { return tb.Name == name })
		if idx < 0 {
			t.Errorf("schema table %s has no Go definition", name)
			continue
		}
		tb := Tables[idx]
		var cols []Column
		for _, l := range strings.Split(m[3], "\n") {
			if c := reCol.FindStringSubmatch(l); c != nil {
				cols = append(cols, Column{Name: c[1], Type: typeByName(t, c[2])})
			}
		}
		want := tb.Columns()
		slices.SortFunc(want, func(a, b Column) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(cols, func(a, b Column) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(cols, want) {
			t.Errorf("%s columns: cql %v, go %v", name, cols, want)
		}
		pk := rePK.FindStringSubmatch(m[3])
		if pk == nil {
			t.Errorf("%s: no PRIMARY KEY ((...), ...)", name)
			continue
		}
		if got := splitNames(pk[1]); !slices.Equal(got, names(tb.Partition)) {
			t.Errorf("%s partition key: cql %v, go %v", name, got, names(tb.Partition))
		}
		if got := splitNames(strings.TrimPrefix(pk[2], ", ")); !slices.Equal(got, names(tb.Clustering)) {
			t.Errorf("%s clustering: cql %v, go %v", name, got, names(tb.Clustering))
		}
		desc := false
		if o := reOrder.FindStringSubmatch(m[4]); o != nil {
			desc = strings.HasSuffix(strings.Split(o[1], ",")[0], " DESC")
		}
		if desc != tb.DescFirst {
			t.Errorf("%s: DESC on first clustering column: cql %v, go %v", name, desc, tb.DescFirst)
		}
		if !reCompact.MatchString(m[4]) {
			t.Errorf("%s: not TWCS", name)
		}
		ttl := reTTL.FindStringSubmatch(m[4])
		wantTTL := "172800"
		if slices.Contains([]*Table{TableServices, TableOperations, TableRemoteServices, TableTagValues}, tb) {
			wantTTL = "345600"
		}
		if ttl == nil || ttl[1] != wantTTL {
			t.Errorf("%s: default_time_to_live %v, want %s", name, ttl, wantTTL)
		}
	}
	for _, tb := range append(Tables, migrationsTable) {
		if !seen[tb.Name] {
			t.Errorf("table %s is not in v001.cql", tb.Name)
		}
	}
}

func typeByName(t *testing.T, s string) ColType {
	for _, c := range []ColType{Text, Blob, BigInt, Int, TinyInt} {
		if c.CQL() == s {
			return c
		}
	}
	t.Errorf("unknown CQL type %s", s)
	return -1
}

func splitNames(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func names(cols []Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

// TestEveryIndexPartitionIsBounded: every index table's partition key
// holds the hourly bucket and the shard, every metadata table's the day;
// only spans is partitioned by trace (bounded by MaxSpansPerTrace).
func TestEveryIndexPartitionIsBounded(t *testing.T) {
	for _, tb := range Tables {
		pk := names(tb.Partition)
		switch {
		case tb == TableSpans:
			if !slices.Equal(pk, []string{"trace_id"}) {
				t.Errorf("spans partition = %v", pk)
			}
		case strings.HasSuffix(tb.Name, "_index"):
			if !slices.Contains(pk, "bucket") || !slices.Contains(pk, "shard") {
				t.Errorf("%s partition %v lacks bucket and shard", tb.Name, pk)
			}
		default:
			if !slices.Contains(pk, "day") {
				t.Errorf("%s partition %v lacks day", tb.Name, pk)
			}
		}
	}
}

func TestMigrateRecordsVersions(t *testing.T) {
	f := newFakeSession()
	ctx := context.Background()
	got, err := Migrate(ctx, f, MigrateConfig{Keyspace: "mk"})
	if err != nil || !slices.Equal(got, []int{1}) {
		t.Fatalf("first migrate applied %v, %v", got, err)
	}
	var ddl int
	for _, s := range f.log {
		if s.Table == nil {
			ddl++
		}
	}
	if ddl != 11 {
		t.Errorf("first migrate ran %d schema statements, want 11 (keyspace + 10 tables)", ddl)
	}
	got, err = Migrate(ctx, f, MigrateConfig{Keyspace: "mk"})
	if err != nil || len(got) != 0 {
		t.Errorf("second migrate applied %v, %v; want nothing", got, err)
	}
}

func TestMigrateRejectsBadInput(t *testing.T) {
	for _, cfg := range []MigrateConfig{
		{Keyspace: "bad-name"},
		{Keyspace: "x; DROP KEYSPACE y"},
		{Replication: "{'class': 'SimpleStrategy'}"},
		{Replication: "{'class': 'Evil', 'replication_factor': 1}"},
		{Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}; DROP TABLE x"},
	} {
		if _, err := SchemaFiles(cfg); err == nil {
			t.Errorf("SchemaFiles(%+v): no error", cfg)
		}
	}
	for _, r := range []string{"{'class': 'NetworkTopologyStrategy', 'dc1': 3}", "{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': 2}"} {
		files, err := SchemaFiles(MigrateConfig{Replication: r})
		if err != nil || !strings.Contains(files[0].Statements[0], r) {
			t.Errorf("replication %s: %v", r, err)
		}
	}
}
