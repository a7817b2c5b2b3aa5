// Command meshlens-bench measures meshlens over its real protocols, with the
// server pinned to one core and the load generator on another.
//
//	meshlens-bench als [flags]    ALS HTTP entries/s through the whole slice
//
// The als benchmark runs two servers in turn against the same pre-generated
// Bookinfo access logs: a null ALS server that decodes every message with
// go-control-plane and discards it (the ceiling any ALS receiver in Go can
// reach on that core), then meshlens itself (decode, identity, endpoint
// grouping, aggregation and TSDB append). It reports entries/s, server CPU
// per entry, allocations per entry, stream-ack latency and peak RSS.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/demo"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: meshlens-bench als|null-als [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "als":
		err = benchALS(os.Args[2:])
	case "null-als":
		err = nullALS(os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshlens-bench:", err)
		os.Exit(1)
	}
}

// nullALS serves ALS v3 and decodes every message (gRPC does that with the
// go-control-plane types) without doing anything with it.
type nullServer struct {
	alsv3.UnimplementedAccessLogServiceServer
}

func (nullServer) StreamAccessLogs(s grpc.ClientStreamingServer[alsv3.StreamAccessLogsMessage, alsv3.StreamAccessLogsResponse]) error {
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return s.SendAndClose(&alsv3.StreamAccessLogsResponse{})
			}
			return err
		}
	}
}

func nullALS(args []string) error {
	fs := flag.NewFlagSet("null-als", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening grpc=%s (null als)\n", ln.Addr())
	s := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	alsv3.RegisterAccessLogServiceServer(s, nullServer{})
	return s.Serve(ln)
}

type server struct {
	cmd  *exec.Cmd
	grpc string
	http string
}

var listenRE = regexp.MustCompile(`listening (\w+)=(\S+) \(`)

// startPinned runs argv on cpu and waits for its listening lines.
func startPinned(cpu int, argv []string, want ...string) (*server, error) {
	full := append([]string{"-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.Command("taskset", full...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %v (is taskset installed?): %w", argv, err)
	}
	s := &server{cmd: cmd}
	found := map[string]string{}
	lines := make(chan string, 128)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for len(found) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				return nil, fmt.Errorf("%v exited before listening", argv)
			}
			if m := listenRE.FindStringSubmatch(l); m != nil {
				found[m[1]] = m[2]
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("%v did not listen within 60s", argv)
		}
	}
	go func() {
		for range lines {
		}
	}()
	s.grpc, s.http = found["grpc"], found["http"]
	return s, nil
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// peakRSS reads VmHWM of the server process (taskset execs the server, so
// the pid is the server's own).
func (s *server) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuSeconds reads the process's user+system CPU time from /proc.
func (s *server) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// metric scrapes one unlabelled-or-labelled sample from /metrics.
func metric(httpAddr, name string) float64 {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sum := 0.0
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

type run struct {
	name       string
	res        demo.BlastResult
	cpu        float64
	rss        int64
	accepted   float64
	refused    float64
	mallocs    float64
	stored     float64
	perCore    float64
	cpuPerItem time.Duration
	at70       demo.BlastResult
}

func benchALS(args []string) error {
	fs := flag.NewFlagSet("als", flag.ExitOnError)
	duration := fs.Duration("duration", 20*time.Second, "steady-state measurement time per server")
	warmup := fs.Duration("warmup", 3*time.Second, "load before measuring")
	streams := fs.Int("streams", 16, "concurrent ALS streams")
	serverCPU := fs.Int("server-cpu", 1, "CPU the server is pinned to")
	requests := fs.Int("requests", 20000, "Bookinfo requests pre-generated (each yields ~10 entries)")
	binary := fs.String("binary", "bin/meshlens", "meshlens binary")
	_ = fs.Parse(args)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	mesh := demo.NewMesh(1, time.Now)
	logs := mesh.Pregenerate(*requests, 50)
	total := 0
	for _, l := range logs {
		total += l.Entries
	}
	fmt.Printf("# ALS benchmark: %d pre-generated Bookinfo entries, %d streams, server on CPU %d, load on the others (GOMAXPROCS %d)\n",
		total, *streams, *serverCPU, runtime.GOMAXPROCS(0))
	fmt.Printf("# machine: %s\n", cpuModel())

	var runs []run
	for _, which := range []string{"null-als", "meshlens"} {
		var argv, want []string
		var dataDir string
		if which == "null-als" {
			argv, want = []string{self, "null-als"}, []string{"grpc"}
		} else {
			dataDir, err = os.MkdirTemp("", "meshlens-bench")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dataDir)
			argv = []string{*binary, "serve", "--storage.path=" + dataDir, "--listen.http=127.0.0.1:0", "--listen.grpc=127.0.0.1:0",
				"--listen.zipkin=", "--listen.otlp_grpc=", "--listen.otlp_http=", "--pipeline.workers=1"}
			want = []string{"grpc", "http"}
		}
		srv, err := startPinned(*serverCPU, argv, want...)
		if err != nil {
			return err
		}
		ctx := context.Background()
		if _, err := demo.Blast(ctx, demo.BlastConfig{Addr: srv.grpc, Streams: *streams, Duration: *warmup}, logs); err != nil {
			srv.stop()
			return fmt.Errorf("%s warm-up: %w", which, err)
		}
		r := run{name: which}
		cpu0 := srv.cpuSeconds()
		var acc0, ref0, mal0 float64
		if srv.http != "" {
			acc0 = metric(srv.http, "meshlens_receiver_accepted_items_total")
			ref0 = metric(srv.http, "meshlens_receiver_refused_items_total")
			mal0 = metric(srv.http, "go_memstats_mallocs_total")
		}
		r.res, err = demo.Blast(ctx, demo.BlastConfig{Addr: srv.grpc, Streams: *streams, Duration: *duration}, logs)
		if err != nil {
			srv.stop()
			return fmt.Errorf("%s: %w", which, err)
		}
		r.cpu = srv.cpuSeconds() - cpu0
		r.rss = srv.peakRSS()

		if srv.http != "" {
			// Let the queue drain before reading the counters.
			time.Sleep(2 * time.Second)
			r.accepted = metric(srv.http, "meshlens_receiver_accepted_items_total") - acc0
			r.refused = metric(srv.http, "meshlens_receiver_refused_items_total") - ref0
			r.mallocs = metric(srv.http, "go_memstats_mallocs_total") - mal0
			r.stored = metric(srv.http, "meshlens_aggregator_samples_appended_total")
		}
		// Ack latency means something below saturation only: replay at 70%
		// of the rate just reached.
		if r.res.Messages > 0 {
			msgRate := 0.7 * float64(r.res.Messages) / r.res.Elapsed.Seconds()
			lat, err := demo.Blast(ctx, demo.BlastConfig{Addr: srv.grpc, Streams: *streams, Duration: *duration / 2, Rate: msgRate}, logs)
			if err == nil {
				r.at70 = lat
			}
		}
		srv.stop()
		if r.cpu > 0 {
			r.perCore = float64(r.res.Entries) / r.cpu
			r.cpuPerItem = time.Duration(r.cpu / float64(r.res.Entries) * 1e9)
		}
		runs = append(runs, r)
	}
	fmt.Println()
	fmt.Println("| server | entries/s (wall) | entries per CPU-second | CPU per entry | allocs/entry | ack p50 / p99 at saturation | entries/s at 70% | ack p50 / p99 at 70% | peak RSS | refused |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		allocs := "n/a"
		if r.accepted > 0 {
			allocs = fmt.Sprintf("%.1f", r.mallocs/r.accepted)
		}
		fmt.Printf("| %s | %.0f | %.0f | %s | %s | %s / %s | %.0f | %s / %s | %d MiB | %.0f |\n", r.name, r.res.EntriesPerSecond, r.perCore,
			r.cpuPerItem, allocs, r.res.AckP50.Round(time.Millisecond), r.res.AckP99.Round(time.Millisecond),
			r.at70.EntriesPerSecond, r.at70.AckP50.Round(time.Millisecond), r.at70.AckP99.Round(time.Millisecond), r.rss>>20, r.refused)
	}
	if len(runs) == 2 && runs[0].res.EntriesPerSecond > 0 {
		fmt.Printf("\nmeshlens / null-als throughput: %.2f; meshlens accepted %.0f of %d entries sent in the measured window\n",
			runs[1].res.EntriesPerSecond/runs[0].res.EntriesPerSecond, runs[1].accepted, runs[1].res.Entries)
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1]) + fmt.Sprintf(", %d CPUs", runtime.NumCPU())
		}
	}
	return runtime.GOARCH
}
