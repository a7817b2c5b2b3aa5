package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Loopback ports used by every server in turn (one server runs at a time),
// away from the defaults so a developer's own `make run` is not disturbed, and
// below Linux's ephemeral range (32768-60999), where any outgoing connection
// may hold them.
const (
	portOTLPGRPC   = "127.0.0.1:24317"
	portOTLPHTTP   = "127.0.0.1:24318"
	portZipkin     = "127.0.0.1:29411"
	portQuery      = "127.0.0.1:26686" // meshlens HTTP / Jaeger query HTTP
	portALS        = "127.0.0.1:21800" // meshlens gRPC (ALS)
	portJaegerAdm  = "127.0.0.1:24269"
	portJaegerCG   = "127.0.0.1:24250"
	portJaegerCH   = "127.0.0.1:24268"
	portJaegerQG   = "127.0.0.1:26685"
	portOtelProm   = "127.0.0.1:28889"
	portPrometheus = "127.0.0.1:29090"
	portVictoria   = "127.0.0.1:28428"
)

// proc is one server process the harness started. It is stopped by its own
// PID only.
type proc struct {
	name string
	cmd  *exec.Cmd
	dir  string // data directory, "" if none
	done chan struct{}
	log  *os.File
}

// startProc runs argv pinned to cpu (taskset execs the program, so the PID
// is the server's own) with extra environment variables.
func startProc(name string, cpu int, env []string, dir, logPath string, argv ...string) (*proc, error) {
	args := append([]string{"-c", strconv.Itoa(cpu)}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), env...)
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s (taskset and %s installed?): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, dir: dir, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the PID, and SIGKILL after 60 s.
func (p *proc) stop() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.log.Close()
}

// cpuSeconds is the process's user+system time from /proc/<pid>/stat.
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// memory returns VmRSS and VmHWM in bytes.
func (p *proc) memory() (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := sc.Text()
		for _, k := range []string{"VmRSS:", "VmHWM:"} {
			if strings.HasPrefix(l, k) {
				f := strings.Fields(l)
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				if k == "VmRSS:" {
					rss = kb << 10
				} else {
					hwm = kb << 10
				}
			}
		}
	}
	return rss, hwm
}

// sampler records the server's RSS every 200 ms while a step runs.
type sampler struct {
	p      *proc
	mu     sync.Mutex
	maxRSS int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startSampler(p *proc) *sampler {
	s := &sampler{p: p, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			rss, _ := p.memory()
			s.mu.Lock()
			s.maxRSS = max(s.maxRSS, rss)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() int64 {
	close(s.stop)
	s.wg.Wait()
	return s.maxRSS
}

// waitReady polls until every address accepts TCP and url (if any) answers 2xx.
func waitReady(ctx context.Context, p *proc, url string, addrs ...string) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited during start-up (see %s)", p.name, p.log.Name())
		}
		ok := true
		for _, a := range addrs {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok && url != "" {
			resp, err := http.Get(url)
			ok = err == nil && resp.StatusCode/100 == 2
			if err == nil {
				resp.Body.Close()
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after 90s (see %s)", p.name, p.log.Name())
}

// portsFree fails if another process already listens on one of addrs.
func portsFree(addrs ...string) error {
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, 300*time.Millisecond); err == nil {
			c.Close()
			return fmt.Errorf("%s is already in use by another process", a)
		}
	}
	return nil
}

// diskBytes is the apparent size of the files under dir.
func diskBytes(dir string) int64 {
	n, _ := diskUsage(dir)
	return n
}

// diskUsage returns the apparent size of the files under dir and the blocks
// allocated to them. They differ by pre-allocation (Pebble allocates its WAL
// files ahead, Badger its value log), which is a fixed cost, not per span.
func diskUsage(dir string) (apparent, allocated int64) {
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			apparent += fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				allocated += st.Blocks * 512
			}
		}
		return nil
	})
	return apparent, allocated
}

// scrape sums the samples of a metric family on a Prometheus text endpoint
// whose label set contains every filter string.
func scrape(url, name string, filters ...string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	sum := 0.0
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		match := true
		for _, f := range filters {
			if !strings.Contains(l, f) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// selfMetrics is meshlens's own metrics endpoint while it is the target.
const selfMetrics = "http://" + portQuery + "/metrics"

// scrapeBuckets reads the cumulative buckets of a histogram on a Prometheus
// text endpoint, keyed by upper bound; nil when the endpoint or the metric
// is missing.
func scrapeBuckets(url, name string) map[float64]float64 {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		rest := l[len(prefix):]
		end := strings.IndexByte(rest, '"')
		if end < 0 {
			continue
		}
		le, err1 := strconv.ParseFloat(rest[:end], 64)
		f := strings.Fields(l)
		v, err2 := strconv.ParseFloat(f[len(f)-1], 64)
		if err1 == nil && err2 == nil {
			out[le] += v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// bucketQuantile is the q-quantile (0..1) of the observations made between
// two scrapes of the same histogram, read as the upper bound of the bucket
// it falls in, and the number of those observations.
func bucketQuantile(before, after map[float64]float64, q float64) (time.Duration, float64) {
	if after == nil {
		return 0, 0
	}
	les := make([]float64, 0, len(after))
	for le := range after {
		les = append(les, le)
	}
	slices.Sort(les)
	total := after[les[len(les)-1]] - before[les[len(les)-1]]
	if total <= 0 {
		return 0, 0
	}
	for _, le := range les {
		if after[le]-before[le] >= q*total {
			if math.IsInf(le, 1) {
				return time.Duration(math.MaxInt64), total
			}
			return time.Duration(le * float64(time.Second)), total
		}
	}
	return 0, total
}
