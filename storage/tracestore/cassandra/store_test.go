package cassandra

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

// TestConformanceOverFake runs the conformance suite against the store on
// the in-memory fake session. It checks the planning, the statements and
// the row mapping — not Cassandra (see TestConformanceCassandra).
func TestConformanceOverFake(t *testing.T) {
	tracestoretest.RunAll(t, func(t *testing.T) tracestore.Store {
		s, err := New(newFakeSession(), Config{AutocompleteKeys: []string{"http.method"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestConformanceCassandra runs the same suite against a real Cassandra
// named by CASSANDRA_HOSTS (make test-cassandra), each subtest in a fresh
// keyspace created by Migrate.
func TestConformanceCassandra(t *testing.T) {
	hosts := os.Getenv("CASSANDRA_HOSTS")
	if hosts == "" {
		t.Skip("CASSANDRA_HOSTS not set: Cassandra conformance skipped (start one with deploy/cassandra/compose.yaml)")
	}
	cc := ClusterConfig{Hosts: strings.Split(hosts, ","), Consistency: "ONE", Timeout: 20 * time.Second}
	n := 0
	tracestoretest.RunAll(t, func(t *testing.T) tracestore.Store {
		n++
		ks := fmt.Sprintf("meshlens_test_%d_%d", time.Now().Unix(), n)
		ctx := context.Background()
		admin, err := Dial(cc, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Migrate(ctx, admin, MigrateConfig{Keyspace: ks, Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}"}); err != nil {
			admin.Close()
			t.Fatal(err)
		}
		sess, err := Dial(cc, ks)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(sess, Config{Keyspace: ks, AutocompleteKeys: []string{"http.method"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			_ = admin.ExecCQL(ctx, "DROP KEYSPACE IF EXISTS "+ks)
			admin.Close()
		})
		return s
	})
}
