package remotewrite

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/storage/metricstore"
)

const promBinary = "/usr/bin/prometheus"

// requirePrometheus skips without Debian's prometheus package, unless the
// run demands every peer (CI), where a skip would hide a missing install.
func requirePrometheus(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(promBinary); err != nil {
		if os.Getenv("MESHLENS_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is missing (apt-get install prometheus) and MESHLENS_REQUIRE_PEERS=1", promBinary)
		}
		t.Skipf("%s is missing: install Debian's prometheus package to run this test", promBinary)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// promProc is a real Prometheus with its remote-write receiver on.
type promProc struct {
	cmd  *exec.Cmd
	addr string
}

func startPrometheus(t *testing.T, addr, dataDir string) *promProc {
	t.Helper()
	cfg := dataDir + "/prometheus.yml"
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promBinary, "--config.file="+cfg, "--storage.tsdb.path="+dataDir+"/tsdb",
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &promProc{cmd: cmd, addr: addr}
	t.Cleanup(p.stop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("prometheus not ready after 30s")
	return nil
}

func (p *promProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// remoteSamples returns the timestamps Prometheus holds for metric.
func remoteSamples(t *testing.T, addr, metric string) map[int64]float64 {
	t.Helper()
	resp, err := http.PostForm("http://"+addr+"/api/v1/query", url.Values{"query": {metric + "[1h]"}})
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil
	}
	out := map[int64]float64{}
	for _, r := range body.Data.Result {
		for _, v := range r.Values {
			ts, _ := v[0].(float64)
			f, _ := strconv.ParseFloat(v[1].(string), 64)
			out[int64(ts*1000+0.5)] = f
		}
	}
	return out
}

func TestRemoteWriteSurvivesReceiverRestart(t *testing.T) {
	requirePrometheus(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	promAddr := freePort(t)
	promDir := t.TempDir()
	prom := startPrometheus(t, promAddr, promDir)

	dir := t.TempDir()
	store, err := metricstore.Open(metricstore.Config{Path: dir, Retention: 24 * time.Hour}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w, err := New(Config{
		Targets:        []Target{{URL: "http://" + promAddr + "/api/v1/write", Timeout: 2 * time.Second}},
		ExternalLabels: map[string]string{"collector": "c1"},
	}, dir, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fan := w.Tee(store)

	lset := labels.FromStrings("__name__", "meshlens_rw_test_total", "service", "reviews")
	want := map[int64]float64{}
	// Remote write sends the samples stamped after its queue started (as
	// every flush of a running meshlens is); it does not resend older WAL
	// contents after a restart of meshlens itself.
	time.Sleep(5 * time.Millisecond)
	base := time.Now().UnixMilli()
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			app := fan.Appender(context.Background())
			ts := base + int64(i)*20
			if _, err := app.Append(0, lset, ts, float64(i)); err != nil {
				t.Fatal(err)
			}
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			want[ts] = float64(i)
			time.Sleep(20 * time.Millisecond)
		}
	}
	appendN(0, 50)
	// The receiver goes away while samples keep coming, then returns.
	prom.stop()
	appendN(50, 50)
	time.Sleep(time.Second)
	startPrometheus(t, promAddr, promDir)
	appendN(100, 50)

	deadline := time.Now().Add(60 * time.Second)
	var got map[int64]float64
	for time.Now().Before(deadline) {
		got = remoteSamples(t, promAddr, `meshlens_rw_test_total{collector="c1"}`)
		if len(got) >= len(want) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	missing := 0
	for ts, v := range want {
		if g, ok := got[ts]; !ok || g != v {
			missing++
			t.Logf("missing sample %v at +%dms", v, ts-base)
		}
	}
	if missing > 0 || len(got) != len(want) {
		t.Fatalf("Prometheus holds %d of %d samples (%d missing or wrong) after a receiver restart", len(got), len(want), missing)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Targets: []Target{{URL: "ftp://x"}}}, "targets[0].url"},
		{Config{Targets: []Target{{URL: "http://ok/api/v1/write", MaxShards: -1}}}, "targets[0]"},
		{Config{ExternalLabels: map[string]string{"bad-name": "x"}}, "external_labels"},
	} {
		err := c.cfg.Validate()
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if err := (Config{Targets: []Target{{URL: "https://mimir/api/v1/push"}}}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
