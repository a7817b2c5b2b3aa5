package pebblestore

import (
	"testing"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	tracestoretest.RunAll(t, func(t *testing.T) tracestore.Store {
		return openTest(t, Config{AutocompleteKeys: []string{"http.method"}})
	})
}
