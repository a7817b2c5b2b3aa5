package main

import (
	"os"
	"testing"
	"time"
)

func TestProbeFsync(t *testing.T) {
	dir := t.TempDir()
	p, err := probeFsync(dir, "test", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if p.N < 5 || p.P50 <= 0 || p.P50 > p.P99 || p.P99 > p.P999 || p.P999 > p.Max {
		t.Fatalf("implausible probe %+v", p)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("probe left %d files behind", len(left))
	}
	if _, err := probeFsync(dir+"/missing", "test", time.Millisecond); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
