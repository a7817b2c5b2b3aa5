package memstore

import (
	"testing"

	"github.com/meshlens/meshlens/storage/tracestore"
	"github.com/meshlens/meshlens/storage/tracestore/tracestoretest"
)

func TestConformance(t *testing.T) {
	tracestoretest.RunAll(t, func(t *testing.T) tracestore.Store {
		s := New(Config{AutocompleteKeys: []string{"http.method"}})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
