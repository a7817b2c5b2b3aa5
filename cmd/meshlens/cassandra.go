package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore/cassandra"
)

const cassandraUsage = `usage: meshlens cassandra migrate [flags]

Applies the trace-store schema versions not yet recorded in the keyspace's
schema_migrations table. With --print, writes the rendered CQL to stdout
instead (for cqlsh), without connecting.
`

// cassandraCmd runs `meshlens cassandra <subcommand>`.
func cassandraCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "migrate" {
		fmt.Fprint(stderr, cassandraUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("meshlens cassandra migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("hosts", "127.0.0.1:9042", "comma-separated Cassandra contact points")
	keyspace := fs.String("keyspace", "meshlens", "keyspace to create or migrate")
	replication := fs.String("replication", "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		"keyspace replication map, e.g. \"{'class': 'NetworkTopologyStrategy', 'dc1': 3}\"")
	ttl := fs.Duration("ttl", 72*time.Hour, "default TTL of span and index tables")
	metaTTL := fs.Duration("metadata-ttl", 0, "default TTL of service/operation tables (0: --ttl)")
	consistency := fs.String("consistency", "ALL", "consistency of the migration statements")
	user := fs.String("username", "", "username (password from --password)")
	pass := fs.String("password", "", "password")
	timeout := fs.Duration("timeout", 30*time.Second, "per-statement timeout (schema changes wait for agreement)")
	printOnly := fs.Bool("print", false, "print the rendered CQL and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	mc := cassandra.MigrateConfig{Keyspace: *keyspace, Replication: *replication, TTL: *ttl, MetadataTTL: *metaTTL}
	if *printOnly {
		files, err := cassandra.SchemaFiles(mc)
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Fprintf(stdout, "-- %s\n", f.Name)
			for _, st := range f.Statements {
				fmt.Fprintf(stdout, "%s;\n\n", st)
			}
		}
		return nil
	}
	sess, err := cassandra.Dial(cassandra.ClusterConfig{Hosts: strings.Split(*hosts, ","), Consistency: *consistency,
		Username: *user, Password: *pass, Timeout: *timeout}, "")
	if err != nil {
		return err
	}
	defer sess.Close()
	applied, err := cassandra.Migrate(ctx, sess, mc)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "keyspace %s: schema up to date\n", *keyspace)
		return nil
	}
	fmt.Fprintf(stdout, "keyspace %s: applied schema versions %v\n", *keyspace, applied)
	return nil
}
