package cassandra

import (
	"context"
	"testing"
)

// TestFakeEnforcesCassandraRules checks the fake the conformance run uses
// rejects what Cassandra rejects and orders rows as Cassandra does, so a
// plan that passes on the fake is one Cassandra accepts.
func TestFakeEnforcesCassandraRules(t *testing.T) {
	f := newFakeSession()
	ctx := context.Background()
	tr := []byte{1}
	row := func(start int64, span byte) Stmt {
		return Stmt{Table: TableServiceIndex, CQL: InsertCQL("ks", TableServiceIndex),
			Row: []any{"a", int32(1), int8(0), start, tr, []byte{span}, int8(2), int64(5), []byte{0}}}
	}
	if err := f.ExecBatch(ctx, []Stmt{row(10, 1), row(30, 2), row(20, 3), row(30, 2)}); err != nil {
		t.Fatal(err)
	}
	read := func(s Stmt) ([][]any, error) {
		it := f.Query(ctx, s)
		var rows [][]any
		for {
			r, ok := it.Next()
			if !ok {
				break
			}
			rows = append(rows, r)
		}
		return rows, it.Close()
	}
	cols := []string{"start_time"}
	rows, err := read(newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1), int8(0)}, nil, 0))
	if err != nil || len(rows) != 3 || rows[0][0] != int64(30) || rows[2][0] != int64(10) {
		t.Errorf("upsert + DESC order: %v, %v (want 30, 20, 10)", rows, err)
	}
	rows, _ = read(newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1), int8(0)}, []Cond{{"start_time", ">=", int64(15)}, {"start_time", "<=", int64(25)}}, 0))
	if len(rows) != 1 || rows[0][0] != int64(20) {
		t.Errorf("clustering range: %v", rows)
	}
	rows, _ = read(newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1), int8(0)}, nil, 2))
	if len(rows) != 2 {
		t.Errorf("limit 2: %v", rows)
	}
	for name, s := range map[string]Stmt{
		"partition key not fully bound": newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1)}, nil, 0),
		"wrong partition type":          newSelect("ks", TableServiceIndex, cols, []any{"a", int64(1), int8(0)}, nil, 0),
		"regular column restricted":     newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1), int8(0)}, []Cond{{"duration", ">=", int64(1)}}, 0),
		"clustering column skipped":     newSelect("ks", TableServiceIndex, cols, []any{"a", int32(1), int8(0)}, []Cond{{"trace_id", "=", tr}}, 0),
		"unknown column selected":       newSelect("ks", TableServiceIndex, []string{"nope"}, []any{"a", int32(1), int8(0)}, nil, 0),
	} {
		if _, err := read(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	bad := row(1, 1)
	bad.Row[3] = int32(1)
	if err := f.ExecBatch(ctx, []Stmt{bad}); err == nil {
		t.Error("insert with a wrong column type accepted")
	}
}
