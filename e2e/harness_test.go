// Package e2e tests the real meshlens binary: each test builds it once,
// starts it on free loopback ports, drives it over its real protocols and
// checks what its public APIs answer.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshlens-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "meshlens")
	build := exec.Command("go", "build", "-o", binary, "../cmd/meshlens")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build meshlens:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one running meshlens process.
type instance struct {
	t     *testing.T
	cmd   *exec.Cmd
	addrs map[string]string // "http", "grpc", ... -> host:port
	done  chan struct{}

	mu  sync.Mutex
	log strings.Builder
}

var listenRE = regexp.MustCompile(`listening (\w+)=(\S+) \(`)

// loopbackFlags puts every listener on a free loopback port.
func loopbackFlags() []string {
	var out []string
	for _, n := range []string{"http", "grpc", "zipkin", "otlp_grpc", "otlp_http"} {
		out = append(out, "--listen."+n+"=127.0.0.1:0")
	}
	return out
}

// start runs `meshlens serve` with the data directory dir and extra flags,
// and waits until /readyz answers.
func start(t *testing.T, dir string, extra ...string) *instance {
	t.Helper()
	return startMode(t, "serve", dir, extra...)
}

// startMode is start for the command mode: serve, collector or query.
func startMode(t *testing.T, mode, dir string, extra ...string) *instance {
	t.Helper()
	args := append([]string{mode, "--storage.path=" + dir, "--log.format=text"}, loopbackFlags()...)
	args = append(args, extra...)
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, cmd: cmd, addrs: map[string]string{}, done: make(chan struct{})}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			in.mu.Lock()
			in.log.WriteString(sc.Text() + "\n")
			in.mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(in.done) }()
	t.Cleanup(func() {
		in.kill()
		if t.Failed() {
			t.Logf("meshlens log:\n%s", in.logs())
		}
	})

	// The ready line follows the listening lines.
	deadline := time.After(60 * time.Second)
	readySeen := false
	for !readySeen || !in.isReady() {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("meshlens exited before it was ready:\n%s", in.logs())
			}
			if m := listenRE.FindStringSubmatch(line); m != nil {
				name := m[1]
				in.mu.Lock()
				if _, dup := in.addrs[name]; dup { // never expected: names are unique
					name = name + "2"
				}
				in.addrs[name] = m[2]
				in.mu.Unlock()
			}
			readySeen = readySeen || strings.Contains(line, "meshlens is ready")
		case <-deadline:
			t.Fatalf("meshlens not ready after 60s:\n%s", in.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Drain the rest of the log so the process never blocks on stderr.
	go func() {
		for range lines {
		}
	}()
	return in
}

func (in *instance) isReady() bool {
	addr, ok := in.addrs["http"]
	if !ok {
		return false
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (in *instance) logs() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log.String()
}

func (in *instance) url(path string) string { return "http://" + in.addrs["http"] + path }

// stop sends SIGTERM and waits for a clean exit.
func (in *instance) stop() {
	in.t.Helper()
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(60 * time.Second):
		in.t.Fatalf("meshlens did not stop within 60s of SIGTERM")
	}
	if code := in.cmd.ProcessState.ExitCode(); code != 0 {
		in.t.Fatalf("meshlens exited with %d after SIGTERM:\n%s", code, in.logs())
	}
}

func (in *instance) kill() {
	select {
	case <-in.done:
	default:
		_ = in.cmd.Process.Kill()
		<-in.done
	}
}

// promResult is the data of a Prometheus API vector answer.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) float(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("sample value %v: %v", s.Value, err)
	}
	return f
}

// query runs an instant PromQL query over the Prometheus HTTP API.
func (in *instance) query(q string) []promSample {
	in.t.Helper()
	resp, err := http.PostForm(in.url("/api/v1/query"), url.Values{"query": {q}})
	if err != nil {
		in.t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		in.t.Fatalf("query %s: decode: %v", q, err)
	}
	if body.Status != "success" {
		in.t.Fatalf("query %s: %s", q, body.Error)
	}
	return body.Data.Result
}

// scalar runs q and returns its single value, or fails.
func (in *instance) scalar(q string) float64 {
	in.t.Helper()
	res := in.query(q)
	if len(res) != 1 {
		in.t.Fatalf("query %s: want one sample, got %d: %+v", q, len(res), res)
	}
	return res[0].float(in.t)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %s", what, timeout, last)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
