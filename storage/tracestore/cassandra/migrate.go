package cassandra

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	cassandradeploy "github.com/meshlens/meshlens/deploy/cassandra"
)

// MigrateConfig fills the schema templates.
type MigrateConfig struct {
	Keyspace string
	// Replication is the keyspace replication map in CQL, e.g.
	// {'class': 'NetworkTopologyStrategy', 'dc1': 3}. Default:
	// SimpleStrategy with replication_factor 1 (one node, tests).
	Replication string
	// TTL and MetadataTTL are the tables' default TTLs (the store also
	// writes each row with its TTL). Default tracestore.DefaultTTL.
	TTL, MetadataTTL time.Duration
	// Schema holds schema/vNNN.cql; default the embedded
	// deploy/cassandra schema.
	Schema fs.FS
}

// SchemaFile is one versioned schema file.
type SchemaFile struct {
	Version int
	Name    string
	// Statements are the rendered CQL statements, in order.
	Statements []string
}

var (
	schemaName  = regexp.MustCompile(`^v(\d{3})\.cql$`)
	replication = regexp.MustCompile(`^\{\s*'class'\s*:\s*'(SimpleStrategy|NetworkTopologyStrategy)'(\s*,\s*'[A-Za-z0-9_.-]+'\s*:\s*'?\d+'?)+\s*\}$`)
)

func (c *MigrateConfig) defaults() error {
	if c.Keyspace == "" {
		c.Keyspace = "meshlens"
	}
	if !validIdent(c.Keyspace) {
		return fmt.Errorf("keyspace %q: want letters, digits and _ only", c.Keyspace)
	}
	if c.Replication == "" {
		c.Replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	}
	if !replication.MatchString(c.Replication) {
		return fmt.Errorf("replication %q: want {'class': 'NetworkTopologyStrategy', 'dc1': 3} or {'class': 'SimpleStrategy', 'replication_factor': 1}", c.Replication)
	}
	if c.TTL <= 0 {
		c.TTL = 72 * time.Hour
	}
	if c.MetadataTTL <= 0 {
		c.MetadataTTL = c.TTL
	}
	if c.Schema == nil {
		c.Schema = cassandradeploy.Schema
	}
	return nil
}

// SchemaFiles renders every schema file, in version order.
func SchemaFiles(cfg MigrateConfig) ([]SchemaFile, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	names, err := fs.Glob(cfg.Schema, "schema/*.cql")
	if err != nil {
		return nil, err
	}
	data := map[string]any{
		"Keyspace": cfg.Keyspace, "Replication": cfg.Replication,
		"TTL": int64(cfg.TTL / time.Second), "MetadataTTL": int64(cfg.MetadataTTL / time.Second),
	}
	var out []SchemaFile
	for _, n := range names {
		m := schemaName.FindStringSubmatch(path.Base(n))
		if m == nil {
			return nil, fmt.Errorf("schema file %s: want vNNN.cql", n)
		}
		v, _ := strconv.Atoi(m[1])
		raw, err := fs.ReadFile(cfg.Schema, n)
		if err != nil {
			return nil, err
		}
		tpl, err := template.New(n).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("schema file %s: %w", n, err)
		}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("schema file %s: %w", n, err)
		}
		out = append(out, SchemaFile{Version: v, Name: path.Base(n), Statements: splitCQL(buf.String())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// splitCQL splits a CQL script into statements, dropping -- comments.
func splitCQL(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for _, st := range strings.Split(strings.Join(lines, "\n"), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

var migrationsTable = &Table{Name: "schema_migrations",
	Partition:  []Column{{"id", Int}},
	Clustering: []Column{{"version", Int}},
	Values:     []Column{{"applied_at", BigInt}},
}

// Migrate applies the schema files not yet recorded in the keyspace's
// schema_migrations table, in version order, and records each. Every
// statement is IF NOT EXISTS, so a migration interrupted half way is
// simply run again. It returns the versions it applied.
func Migrate(ctx context.Context, sess Session, cfg MigrateConfig) ([]int, error) {
	files, err := SchemaFiles(cfg)
	if err != nil {
		return nil, err
	}
	ks := cfg.Keyspace
	if ks == "" {
		ks = "meshlens"
	}
	applied := map[int]bool{}
	// Before version 1 the keyspace and table do not exist; the read
	// fails and every file is applied.
	it := sess.Query(ctx, newSelect(ks, migrationsTable, []string{"version"}, []any{int32(0)}, nil, 0))
	for {
		row, ok := it.Next()
		if !ok {
			break
		}
		applied[int(row[0].(int32))] = true
	}
	_ = it.Close()
	var done []int
	for _, f := range files {
		if applied[f.Version] {
			continue
		}
		for _, st := range f.Statements {
			if err := sess.ExecCQL(ctx, st); err != nil {
				return done, fmt.Errorf("schema %s: %w\n%s", f.Name, err, st)
			}
		}
		rec := Stmt{Table: migrationsTable, CQL: InsertCQL(ks, migrationsTable),
			Row: []any{int32(0), int32(f.Version), time.Now().UnixNano()}, TTL: 0}
		if err := sess.ExecBatch(ctx, []Stmt{rec}); err != nil {
			return done, fmt.Errorf("record schema version %d: %w", f.Version, err)
		}
		done = append(done, f.Version)
	}
	return done, nil
}
