package cassandra

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// fakeSession is an in-memory stand-in for Cassandra with the semantics
// the store relies on: rows live in partitions addressed by the whole
// partition key, an insert with an existing primary key replaces the row,
// selects must bind the whole partition key and restrict clustering columns
// only as Cassandra allows (equalities on a prefix, then one range), rows
// come back in clustering order (DESC on the first column where the table
// says so). TTLs are ignored. It also records every statement.
type fakeSession struct {
	mu     sync.Mutex
	tables map[string]map[string]*fakePartition
	// Batches and Selects count round trips; Rows counts inserted rows.
	Batches, Selects, Rows int
	// failNext makes the next ExecBatch fail (retry tests).
	failNext bool
	// record keeps the statements when set.
	record bool
	log    []Stmt
}

type fakePartition struct {
	rows map[string][]any
}

func newFakeSession() *fakeSession {
	return &fakeSession{tables: map[string]map[string]*fakePartition{}}
}

func typeOK(c Column, v any) bool {
	switch c.Type {
	case Text:
		_, ok := v.(string)
		return ok
	case Blob:
		_, ok := v.([]byte)
		return ok
	case BigInt:
		_, ok := v.(int64)
		return ok
	case Int:
		_, ok := v.(int32)
		return ok
	case TinyInt:
		_, ok := v.(int8)
		return ok
	}
	return false
}

func keyOf(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		if bs, ok := v.([]byte); ok {
			fmt.Fprintf(&b, "%x|", bs)
		} else {
			fmt.Fprintf(&b, "%T:%v|", v, v)
		}
	}
	return b.String()
}

func (f *fakeSession) ExecBatch(_ context.Context, stmts []Stmt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Batches++
	if f.failNext {
		f.failNext = false
		return fmt.Errorf("fake: write timeout")
	}
	if f.record {
		f.log = append(f.log, stmts...)
	}
	for _, s := range stmts {
		if !s.IsInsert() {
			return fmt.Errorf("fake: batch holds a non-insert on %s", s.Table.Name)
		}
		cols := s.Table.Columns()
		if len(s.Row) != len(cols) {
			return fmt.Errorf("fake: %s insert has %d values for %d columns", s.Table.Name, len(s.Row), len(cols))
		}
		for i, c := range cols {
			if !typeOK(c, s.Row[i]) {
				return fmt.Errorf("fake: %s.%s: %T is not %s", s.Table.Name, c.Name, s.Row[i], c.Type.CQL())
			}
		}
		if s.CQL != InsertCQL(strings.SplitN(strings.TrimPrefix(s.CQL, "INSERT INTO "), ".", 2)[0], s.Table) {
			return fmt.Errorf("fake: CQL %q does not match table %s", s.CQL, s.Table.Name)
		}
		np, nc := len(s.Table.Partition), len(s.Table.Clustering)
		parts := f.tables[s.Table.Name]
		if parts == nil {
			parts = map[string]*fakePartition{}
			f.tables[s.Table.Name] = parts
		}
		pk := keyOf(s.Row[:np])
		p := parts[pk]
		if p == nil {
			p = &fakePartition{rows: map[string][]any{}}
			parts[pk] = p
		}
		p.rows[keyOf(s.Row[np:np+nc])] = s.Row
		f.Rows++
	}
	return nil
}

func compareVals(a, b any) int {
	switch a := a.(type) {
	case string:
		return strings.Compare(a, b.(string))
	case []byte:
		return bytes.Compare(a, b.([]byte))
	case int64:
		return cmp.Compare(a, b.(int64))
	case int32:
		return cmp.Compare(a, b.(int32))
	case int8:
		return cmp.Compare(a, b.(int8))
	}
	panic(fmt.Sprintf("fake: cannot compare %T", a))
}

type fakeIter struct {
	rows [][]any
	err  error
}

func (it *fakeIter) Next() ([]any, bool) {
	if len(it.rows) == 0 {
		return nil, false
	}
	r := it.rows[0]
	it.rows = it.rows[1:]
	return r, true
}

func (it *fakeIter) Close() error { return it.err }

func (f *fakeSession) Query(_ context.Context, s Stmt) Iter {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Selects++
	if f.record {
		f.log = append(f.log, s)
	}
	rows, err := f.selectRows(s)
	return &fakeIter{rows: rows, err: err}
}

// selectRows enforces Cassandra's restrictions on a single-partition select.
func (f *fakeSession) selectRows(s Stmt) ([][]any, error) {
	t := s.Table
	if len(s.Partition) != len(t.Partition) {
		return nil, fmt.Errorf("fake: %s: partition key not fully bound (would need ALLOW FILTERING)", t.Name)
	}
	for i, c := range t.Partition {
		if !typeOK(c, s.Partition[i]) {
			return nil, fmt.Errorf("fake: %s.%s: %T is not %s", t.Name, c.Name, s.Partition[i], c.Type.CQL())
		}
	}
	if s.CQL == "" || !strings.Contains(s.CQL, "FROM ") || !strings.HasSuffix(strings.SplitN(strings.SplitN(s.CQL, "FROM ", 2)[1], " ", 2)[0], "."+t.Name) {
		return nil, fmt.Errorf("fake: CQL %q does not select from %s", s.CQL, t.Name)
	}
	// Clustering restrictions: equalities on a prefix, then ranges on one
	// column.
	pos := 0
	rangeCol := -1
	for _, c := range s.Where {
		idx := slices.IndexFunc(t.Clustering, func(col Column) bool { return col.Name == c.Col })
		if idx < 0 {
			return nil, fmt.Errorf("fake: %s: %s is not a clustering column (would need ALLOW FILTERING)", t.Name, c.Col)
		}
		if !typeOK(t.Clustering[idx], c.Value) {
			return nil, fmt.Errorf("fake: %s.%s: %T is not %s", t.Name, c.Col, c.Value, t.Clustering[idx].Type.CQL())
		}
		switch {
		case c.Op == "=" && rangeCol < 0 && idx == pos:
			pos++
		case c.Op != "=" && (rangeCol < 0 && idx == pos || rangeCol == idx):
			rangeCol = idx
		default:
			return nil, fmt.Errorf("fake: %s: restriction on %s not allowed after the preceding ones", t.Name, c.Col)
		}
	}
	colIdx := map[string]int{}
	for i, c := range t.Columns() {
		colIdx[c.Name] = i
	}
	for _, c := range s.Select {
		if _, ok := colIdx[c]; !ok {
			return nil, fmt.Errorf("fake: %s has no column %s", t.Name, c)
		}
	}
	parts := f.tables[t.Name]
	p := parts[keyOf(s.Partition)]
	if p == nil {
		return nil, nil
	}
	var rows [][]any
	np := len(t.Partition)
	for _, r := range p.rows {
		ok := true
		for _, c := range s.Where {
			d := compareVals(r[colIdx[c.Col]], c.Value)
			switch c.Op {
			case "=":
				ok = ok && d == 0
			case ">=":
				ok = ok && d >= 0
			case "<=":
				ok = ok && d <= 0
			case ">":
				ok = ok && d > 0
			case "<":
				ok = ok && d < 0
			}
		}
		if ok {
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b []any) int {
		for i := range t.Clustering {
			d := compareVals(a[np+i], b[np+i])
			if i == 0 && t.DescFirst {
				d = -d
			}
			if d != 0 {
				return d
			}
		}
		return 0
	})
	if s.Limit > 0 && len(rows) > s.Limit {
		rows = rows[:s.Limit]
	}
	out := make([][]any, len(rows))
	for i, r := range rows {
		proj := make([]any, len(s.Select))
		for j, c := range s.Select {
			proj[j] = r[colIdx[c]]
		}
		out[i] = proj
	}
	return out, nil
}

func (f *fakeSession) ExecCQL(_ context.Context, cql string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, Stmt{CQL: cql})
	return nil
}

func (f *fakeSession) Close() {}

// partitions is the number of partitions of a table.
func (f *fakeSession) partitions(table string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tables[table])
}
