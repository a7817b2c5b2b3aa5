package server

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestShippedConfigIsTheDefault(t *testing.T) {
	// deploy/meshlens.yaml documents every field with its default value: it
	// must decode strictly and equal DefaultConfig, so the document cannot
	// drift from the code.
	data, err := os.ReadFile("../deploy/meshlens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := decodeYAML(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	// Compared as YAML: an empty list in the file and a nil default are
	// the same setting.
	got, _ := yaml.Marshal(cfg)
	def, _ := yaml.Marshal(want)
	if string(got) != string(def) {
		t.Errorf("deploy/meshlens.yaml differs from DefaultConfig:\n got:\n%s\nwant:\n%s", got, def)
	}
	// Every leaf of the config is documented in the file.
	for _, l := range leaves(&want) {
		last := l.path[strings.LastIndexByte(l.path, '.')+1:]
		if !strings.Contains(string(data), last+":") {
			t.Errorf("deploy/meshlens.yaml does not document %s", l.path)
		}
	}
}

func TestOverridesPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/c.yaml"
	if err := os.WriteFile(file, []byte("listen:\n  http: 127.0.0.1:1111\n  grpc: 127.0.0.1:2222\nstorage:\n  path: /from/file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"MESHLENS_LISTEN_GRPC=127.0.0.1:3333", "MESHLENS_STORAGE_TRACES_RETENTION=24h", "MESHLENS_STORAGE_PATH=/from/env"}
	cfg, _, err := LoadConfig([]string{"--config", file, "--storage.path=/from/flag", "--processors.metrics.flush_interval=1s"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"file", cfg.Listen.HTTP, "127.0.0.1:1111"},
		{"env over file", cfg.Listen.GRPC, "127.0.0.1:3333"},
		{"env", cfg.Storage.Traces.Retention, 24 * time.Hour},
		{"flag over env", cfg.Storage.Path, "/from/flag"},
		{"flag", cfg.Processors.Metrics.FlushInterval, time.Second},
		{"default", cfg.Listen.OTLPGRPC, ":4317"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestInvalidConfigErrorsNameFields(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want []string
	}{
		{[]string{"--listen.http=nonsense"}, nil, []string{"listen.http"}},
		{[]string{"--pipeline.queue_capacity=0", "--log.level=loud"}, nil, []string{"pipeline.queue_capacity", "log.level"}},
		{nil, []string{"MESHLENS_QUERY_TIMEOUT=soon"}, []string{"MESHLENS_QUERY_TIMEOUT", "query.timeout"}},
		{[]string{"--processors.metrics.flush_interval=1ms"}, nil, []string{"processors.metrics.flush_interval"}},
		{[]string{"--storage.metrics.block_duration=30s"}, nil, []string{"storage.metrics.block_duration"}},
		{[]string{"--storage.metrics.block_duration=200h"}, nil, []string{"storage.metrics.block_duration"}},
	}
	for _, c := range cases {
		_, _, err := LoadConfig(c.args, c.env, io.Discard)
		if err == nil {
			t.Errorf("%v %v: accepted", c.args, c.env)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q does not name %s", c.args, c.env, err, w)
			}
		}
	}
	// A YAML type error names the field, not only the line.
	err := decodeYAML([]byte("storage:\n  metrics:\n    retention: soon\n"), &Config{})
	if err == nil || !strings.Contains(err.Error(), "storage.metrics.retention") {
		t.Errorf("yaml type error %v does not name storage.metrics.retention", err)
	}
}

func TestTraceBackendValidation(t *testing.T) {
	_, _, err := LoadConfig([]string{"--storage.traces.backend=cassandra"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "storage.traces.cassandra.hosts") {
		t.Errorf("cassandra without hosts: %v, want an error naming storage.traces.cassandra.hosts", err)
	}
	_, _, err = LoadConfig([]string{"--storage.traces.backend=badger"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "storage.traces.backend") {
		t.Errorf("unknown backend: %v, want an error naming storage.traces.backend", err)
	}
	for _, bad := range []string{"-1s", "1m"} {
		_, _, err = LoadConfig([]string{"--storage.traces.wal_sync_interval=" + bad}, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "storage.traces.wal_sync_interval") {
			t.Errorf("wal_sync_interval %s: %v, want an error naming storage.traces.wal_sync_interval", bad, err)
		}
	}
	cfg, _, err := LoadConfig(nil, []string{"MESHLENS_STORAGE_TRACES_WAL_SYNC_INTERVAL=0s"}, io.Discard)
	if err != nil || cfg.Storage.Traces.WALSyncInterval != 0 {
		t.Errorf("wal_sync_interval 0 (fsync every acknowledgement) from the environment: %v, %s", err, cfg.Storage.Traces.WALSyncInterval)
	}
}
