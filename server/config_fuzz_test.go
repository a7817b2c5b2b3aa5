package server

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzConfig feeds arbitrary YAML and MESHLENS_* environment through what
// LoadConfig does with them (strict decode, field naming in errors,
// environment overrides, validation): no input panics, and every refusal
// carries a message.
func FuzzConfig(f *testing.F) {
	shipped, err := os.ReadFile("../deploy/meshlens.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ yaml, env string }{
		{string(shipped), ""},
		{"listen:\n  http: 127.0.0.1:1111\nstorage:\n  path: /x\n", "MESHLENS_STORAGE_TRACES_RETENTION=24h"},
		{"storage:\n  metrics:\n    retention: -5h\n", "MESHLENS_PIPELINE_MAX_RECV_MSG_BYTES=12"},
		{"storage:\n  metrics:\n    retentoin: 5h\n", ""},
		{"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", ""},
		{strings.Repeat("[", 200) + strings.Repeat("]", 200), ""},
		{"listen: {http: \"\xff\xfe\"}", "MESHLENS_LISTEN_HTTP=\xff"},
		{"", "MESHLENS_PROCESSORS_METRICS_FLUSH_INTERVAL=1e400h\nMESHLENS_RECEIVERS_JAEGER_MAX_SPANS_PER_BATCH=99999999999999999999"},
	} {
		f.Add([]byte(s.yaml), s.env)
	}
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		cfg := DefaultConfig()
		if err := decodeYAML(data, &cfg); err != nil {
			if err.Error() == "" {
				t.Fatal("decode error without a message")
			}
			return
		}
		if err := applyEnv(&cfg, strings.Split(env, "\n")); err != nil {
			if err.Error() == "" {
				t.Fatal("environment error without a message")
			}
			return
		}
		if err := errors.Join(cfg.Validate(), cfg.ValidateMode(ModeAll)); err != nil && err.Error() == "" {
			t.Fatal("validation error without a message")
		}
	})
}

// TestHostileConfigFile: a config file is trusted more than network input,
// but a wrong or hostile one must still end in an error that says what is
// wrong, quickly, without the process blowing up.
func TestHostileConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"alias bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
			"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
			"line 9 (i): field i not found"}, // 9^9 strings if expanded; unknown keys are skipped, not expanded
		{"100k nested sequences", strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), "exceeded max depth"},
		{"unknown key named by path", "storage:\n  metrics:\n    retentoin: 5h\n", "line 3 (storage.metrics.retentoin): field retentoin not found"},
		{"wrong type named by path", "pipeline:\n  max_recv_msg_bytes: lots\n", "line 2 (pipeline.max_recv_msg_bytes): cannot unmarshal"},
		{"invalid UTF-8", "listen:\n  http: \"\xff\xfe\"\n", "invalid"},
		{"duplicate key", "listen:\n  http: a\n  http: b\n", "line 3 (listen.http): mapping key \"http\" already defined at line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			start := time.Now()
			err := decodeYAML([]byte(tc.yaml), &cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
