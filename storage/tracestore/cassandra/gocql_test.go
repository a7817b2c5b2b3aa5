package cassandra

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func gocqlType(c ColType) gocql.TypeInfo {
	t := map[ColType]gocql.Type{Text: gocql.TypeText, Blob: gocql.TypeBlob, BigInt: gocql.TypeBigInt, Int: gocql.TypeInt, TinyInt: gocql.TypeTinyInt}[c]
	return gocql.NewNativeType(4, t, "")
}

// TestValuesMarshalWithGocql marshals every bound value of every insert
// and planned select through gocql's own codec for its column's CQL type,
// and back into the Go type the gocql iterator scans into: the part of
// the driver contract that needs no server.
func TestValuesMarshalWithGocql(t *testing.T) {
	cfg := WriteConfig{Keyspace: "ks", Shards: 4, TTL: time.Hour, MetadataTTL: time.Hour, AutocompleteKeys: []string{"http.method"}}
	stmts, err := Rows(cfg, insertCQL("ks"), tracestoretest.Fixture(tracestoretest.Base()))
	if err != nil {
		t.Fatal(err)
	}
	check := func(table string, c Column, v any) {
		b, err := gocql.Marshal(gocqlType(c.Type), v)
		if err != nil {
			t.Errorf("%s.%s: gocql cannot marshal %T as %s: %v", table, c.Name, v, c.Type.CQL(), err)
			return
		}
		back := reflect.New(reflect.TypeOf(v))
		if err := gocql.Unmarshal(gocqlType(c.Type), b, back.Interface()); err != nil {
			t.Errorf("%s.%s: unmarshal: %v", table, c.Name, err)
			return
		}
		got := back.Elem().Interface()
		if bs, ok := v.([]byte); ok {
			if !bytes.Equal(bs, got.([]byte)) {
				t.Errorf("%s.%s: %x came back as %x", table, c.Name, bs, got)
			}
		} else if got != v {
			t.Errorf("%s.%s: %v came back as %v", table, c.Name, v, got)
		}
	}
	for _, s := range stmts {
		for i, c := range s.Table.Columns() {
			check(s.Table.Name, c, s.Row[i])
		}
		check(s.Table.Name, Column{"[ttl]", Int}, s.TTL)
	}
	q, _ := tracestore.Query{Service: "a", Tags: map[string]string{"k": "v"}}.Normalize(time.Now(), time.Hour)
	var sels []Stmt
	for _, b := range PlanFind("ks", 4, q, nil).Buckets {
		sels = append(sels, b.Stmts...)
	}
	q.Tags, q.DurationMin = nil, time.Millisecond
	for _, b := range PlanFind("ks", 4, q, nil).Buckets {
		sels = append(sels, b.Stmts...)
	}
	sels = append(sels, PlanTrace("ks", make([]byte, 16), 10))
	sels = append(sels, PlanOperations("ks", "a", 1, []int32{1})...)
	sels = append(sels, PlanDependencies("ks", 4, []string{"a"}, time.Now().Add(-time.Hour), time.Now())...)
	for _, s := range sels {
		for i, c := range s.Table.Partition {
			check(s.Table.Name, c, s.Partition[i])
		}
		for _, w := range s.Where {
			c, ok := s.Table.Col(w.Col)
			if !ok {
				t.Fatalf("%s has no %s", s.Table.Name, w.Col)
			}
			check(s.Table.Name, c, w.Value)
		}
		if s.Limit > 0 {
			if _, err := gocql.Marshal(gocqlType(Int), s.Limit); err != nil {
				t.Errorf("limit: %v", err)
			}
		}
	}
}
