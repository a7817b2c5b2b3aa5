package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshlens/meshlens/ui"
)

// browser is one headless Chromium tab driven over the DevTools protocol.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// chromiumPath finds Debian's chromium. Without it the browser tests skip,
// or fail when MESHLENS_REQUIRE_PEERS=1.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("MESHLENS_REQUIRE_PEERS") == "1" {
		t.Fatal("browser test needs Debian's chromium (/usr/bin/chromium) and MESHLENS_REQUIRE_PEERS=1 is set")
	}
	t.Skip("browser test needs Debian's chromium (/usr/bin/chromium): apt-get install -y chromium, or make test-deps")
	return ""
}

// artifactDir is where a test's screenshots go: e2e/artifacts/<test>
// (gitignored), kept after the run for a reviewer.
func artifactDir(t testing.TB) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := filepath.Abs(filepath.Join("artifacts", name))
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts headless Chromium with a fresh profile, no network
// access beyond what the page asks of 127.0.0.1, and a 1440x900 window.
func newBrowser(t testing.TB, timeout time.Duration) *browser {
	t.Helper()
	path := chromiumPath(t)
	tt, _ := t.(*testing.T)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	b := &browser{t: tt, ctx: ctx}
	// Start the browser now, so that a broken install fails here.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// problems lists uncaught exceptions and CSP violations the page logged.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		if m.Type == chromedp.ConsoleException || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
			out = append(out, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
		}
	}
	return out
}

func (b *browser) checkConsole(t testing.TB) {
	t.Helper()
	for _, p := range b.problems() {
		t.Errorf("browser console: %s", p)
	}
}

func (b *browser) navigate(t testing.TB, u string) {
	t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
}

// waitJS polls a JavaScript expression until it is truthy.
func (b *browser) waitJS(t testing.TB, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`!!(`+expr+`)`, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 1500) : ''`))
		t.Fatalf("%s: %s not true after %s: %v\npage text:\n%s\nconsole problems: %v", what, expr, timeout, err, state, b.problems())
	}
}

func evalJS[T any](t testing.TB, b *browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) click(t testing.TB, css string) {
	t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Click(chromedp.CSS(css))); err != nil {
		t.Fatalf("click %s: %v", css, err)
	}
}

// screenshot saves a full-page PNG under dir and logs its path.
func (b *browser) screenshot(t testing.TB, dir, name string) {
	t.Helper()
	// Let charts and layout settle after the last data arrived.
	_ = chromedp.Do(b.ctx, chromedp.Sleep(150*time.Millisecond))
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("write %s: %v", p, err)
		return
	}
	t.Logf("screenshot: %s", p)
}

// uiServer serves the UI for a test. When the binary already serves the UI
// (ui.Register wired into server/components.go) it is used as is;
// otherwise the test serves ui.Handler itself and proxies every other path
// to the binary, so the pages still read the binary's real APIs.
func uiServer(t *testing.T, backend string) string {
	t.Helper()
	resp, err := http.Get(backend + "/ui/app.css")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return backend
		}
	}
	t.Logf("the binary does not serve the UI yet (GET /ui/app.css: %v); serving ui.Handler from the test and proxying the APIs to %s", statusOf(resp, err), backend)
	target, _ := url.Parse(backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mux := http.NewServeMux()
	ui.Register(mux)
	mux.Handle("/", proxy)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func statusOf(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// apiStatus is the HTTP status a GET of path answers with.
func apiStatus(t *testing.T, base, path string) int {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
