package cassandra

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// ClusterConfig is how the store reaches Cassandra.
type ClusterConfig struct {
	// Hosts are host or host:port contact points (default port 9042).
	Hosts []string
	// Consistency of reads and writes: "ONE", "LOCAL_ONE", "QUORUM",
	// "LOCAL_QUORUM" (default), "ALL".
	Consistency string
	// LocalDC makes routing DC-aware (token-aware within the DC).
	LocalDC            string
	Username, Password string
	Timeout            time.Duration // per request, default 5s
	ConnectTimeout     time.Duration // default 5s
	NumConns           int           // connections per host, default 2
	// PageSize of selects (default 1000).
	PageSize int
	// ProtoVersion 0 negotiates (4 for Cassandra 4.1, 5 for 5.0).
	ProtoVersion int
}

// gocqlSession implements Session with gocql: statements are prepared
// (gocql prepares every statement with bind values and caches it), routing
// is token-aware, and consistency applies to every statement.
type gocqlSession struct {
	s        *gocql.Session
	cons     gocql.Consistency
	pageSize int
}

// Dial connects to the cluster. keyspace may be empty (migrate).
func Dial(cc ClusterConfig, keyspace string) (Session, error) {
	if len(cc.Hosts) == 0 {
		return nil, fmt.Errorf("cassandra: no hosts")
	}
	cons := gocql.LocalQuorum
	if cc.Consistency != "" {
		c, err := gocql.ParseConsistencyWrapper(strings.ToUpper(cc.Consistency))
		if err != nil {
			return nil, fmt.Errorf("cassandra consistency %q: %w", cc.Consistency, err)
		}
		cons = c
	}
	cl := gocql.NewCluster(cc.Hosts...)
	cl.Keyspace = keyspace
	cl.Consistency = cons
	cl.Timeout = orDur(cc.Timeout, 5*time.Second)
	cl.ConnectTimeout = orDur(cc.ConnectTimeout, 5*time.Second)
	if cc.NumConns > 0 {
		cl.NumConns = cc.NumConns
	}
	if cc.ProtoVersion > 0 {
		cl.ProtoVersion = cc.ProtoVersion
	}
	fallback := gocql.RoundRobinHostPolicy()
	if cc.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cc.LocalDC)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if cc.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: cc.Username, Password: cc.Password}
	}
	s, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra connect %v: %w", cc.Hosts, err)
	}
	ps := cc.PageSize
	if ps <= 0 {
		ps = 1000
	}
	return &gocqlSession{s: s, cons: cons, pageSize: ps}, nil
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (g *gocqlSession) ExecBatch(ctx context.Context, stmts []Stmt) error {
	if len(stmts) == 1 {
		return g.s.Query(stmts[0].CQL, stmts[0].Values()...).WithContext(ctx).Consistency(g.cons).Exec()
	}
	b := g.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	b.SetConsistency(g.cons)
	for i := range stmts {
		b.Query(stmts[i].CQL, stmts[i].Values()...)
	}
	return g.s.ExecuteBatch(b)
}

func (g *gocqlSession) Query(ctx context.Context, s Stmt) Iter {
	it := g.s.Query(s.CQL, s.Values()...).WithContext(ctx).Consistency(g.cons).PageSize(g.pageSize).Iter()
	cols := make([]Column, len(s.Select))
	for i, name := range s.Select {
		c, _ := s.Table.Col(name)
		cols[i] = c
	}
	return &gocqlIter{it: it, cols: cols}
}

func (g *gocqlSession) ExecCQL(ctx context.Context, cql string) error {
	return g.s.Query(cql).WithContext(ctx).Consistency(g.cons).Exec()
}

func (g *gocqlSession) Close() { g.s.Close() }

// gocqlIter scans rows into the Go types the fake and the store use.
type gocqlIter struct {
	it   *gocql.Iter
	cols []Column
}

func (g *gocqlIter) Next() ([]any, bool) {
	dest := make([]any, len(g.cols))
	for i, c := range g.cols {
		switch c.Type {
		case Text:
			dest[i] = new(string)
		case Blob:
			dest[i] = new([]byte)
		case BigInt:
			dest[i] = new(int64)
		case Int:
			dest[i] = new(int32)
		case TinyInt:
			dest[i] = new(int8)
		}
	}
	if !g.it.Scan(dest...) {
		return nil, false
	}
	row := make([]any, len(dest))
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			row[i] = *d
		case *[]byte:
			row[i] = *d
		case *int64:
			row[i] = *d
		case *int32:
			row[i] = *d
		case *int8:
			row[i] = *d
		}
	}
	return row, true
}

func (g *gocqlIter) Close() error { return g.it.Close() }
