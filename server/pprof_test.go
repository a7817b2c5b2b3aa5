package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestPprofListener: off by default; when set, only on loopback, and it
// serves heap profiles on its own port, not on the query port.
func TestPprofListener(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.1.2.3:6060", "nonsense"} {
		cfg := DefaultConfig()
		cfg.Listen.Pprof = addr
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "listen.pprof") {
			t.Errorf("listen.pprof=%q: %v, want an error naming listen.pprof", addr, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Storage.Path = t.TempDir()
	cfg.Listen = ListenConfig{HTTP: "127.0.0.1:0", Pprof: "127.0.0.1:0"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Flags{Mode: ModeAll}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + srv.Addr("pprof") + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof heap: %d %.80q", code, body)
	}
	if code, _ := get(srv.URL("/debug/pprof/heap")); code == http.StatusOK {
		t.Error("the query port serves /debug/pprof/")
	}
}
