package cassandra

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Session is the part of a Cassandra driver the store uses; gocqlSession
// implements it with gocql, and tests with an in-memory fake.
type Session interface {
	// ExecBatch runs stmts (inserts) as one UNLOGGED batch: one round trip.
	ExecBatch(ctx context.Context, stmts []Stmt) error
	// Query runs a select; the iterator yields rows with the columns of
	// s.Select, in order.
	Query(ctx context.Context, s Stmt) Iter
	// ExecCQL runs a statement without bind values (schema changes).
	ExecCQL(ctx context.Context, cql string) error
	Close()
}

// Iter yields the rows of a select.
type Iter interface {
	// Next returns the next row, or false at the end or on error.
	Next() ([]any, bool)
	// Close returns the error that ended the iteration, if any.
	Close() error
}

// Cond restricts a clustering column of a select.
type Cond struct {
	Col   string
	Op    string // "=", ">=", "<="
	Value any
}

// Stmt is one CQL statement with its bind values, and the structure it was
// generated from (table, partition key values, clustering conditions) so
// that plans can be checked and a fake can execute it.
type Stmt struct {
	Table *Table
	CQL   string
	// Insert: Row holds a value for every column of Table.Columns().
	Row []any
	TTL int32
	// Select: the columns returned, the partition key values, the
	// clustering restrictions and a row limit (0: none).
	Select    []string
	Partition []any
	Where     []Cond
	Limit     int
}

// IsInsert reports whether s is an insert.
func (s *Stmt) IsInsert() bool { return s.Row != nil }

// Values returns the bind values in the order of s.CQL's markers.
func (s *Stmt) Values() []any {
	if s.IsInsert() {
		return append(append(make([]any, 0, len(s.Row)+1), s.Row...), s.TTL)
	}
	out := append([]any{}, s.Partition...)
	for _, c := range s.Where {
		out = append(out, c.Value)
	}
	if s.Limit > 0 {
		out = append(out, s.Limit)
	}
	return out
}

// PartitionKey renders the partition key values of s (insert or select),
// for grouping writes and for tests.
func (s *Stmt) PartitionKey() string {
	var vals []any
	if s.IsInsert() {
		vals = s.Row[:len(s.Table.Partition)]
	} else {
		vals = s.Partition
	}
	b := make([]byte, 0, 64)
	b = append(b, s.Table.Name...)
	for _, v := range vals {
		b = append(b, '|')
		switch v := v.(type) {
		case string:
			b = strconv.AppendQuote(b, v)
		case []byte:
			b = hex.AppendEncode(b, v)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case int8:
			b = strconv.AppendInt(b, int64(v), 10)
		default:
			b = fmt.Append(b, v)
		}
	}
	return string(b)
}

// InsertCQL is the insert statement of t in keyspace ks: every column,
// then the TTL.
func InsertCQL(ks string, t *Table) string {
	cols := t.Columns()
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
		marks[i] = "?"
	}
	return fmt.Sprintf("INSERT INTO %s.%s (%s) VALUES (%s) USING TTL ?", ks, t.Name,
		strings.Join(names, ", "), strings.Join(marks, ", "))
}

// SelectCQL renders a select of s.Select from s.Table restricted to one
// partition (every partition key column bound) and clustering conditions.
func SelectCQL(ks string, s *Stmt) string {
	var where []string
	for _, c := range s.Table.Partition {
		where = append(where, c.Name+" = ?")
	}
	for _, c := range s.Where {
		where = append(where, c.Col+" "+c.Op+" ?")
	}
	q := fmt.Sprintf("SELECT %s FROM %s.%s WHERE %s", strings.Join(s.Select, ", "), ks, s.Table.Name, strings.Join(where, " AND "))
	if s.Limit > 0 {
		q += " LIMIT ?"
	}
	return q
}

// newSelect builds a select of one partition of t.
func newSelect(ks string, t *Table, cols []string, partition []any, where []Cond, limit int) Stmt {
	s := Stmt{Table: t, Select: cols, Partition: partition, Where: where, Limit: limit}
	s.CQL = SelectCQL(ks, &s)
	return s
}
