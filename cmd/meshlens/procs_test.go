package main

import (
	"log/slog"
	"testing"
)

func TestRaiseProcs(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         string
		procs, want int
	}{
		{"one CPU", "", 1, 2},
		{"two CPUs", "", 2, 2},
		{"many CPUs", "", 8, 8},
		{"operator chose one", "1", 1, 1},
		{"operator chose four", "4", 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := tc.procs
			set := func(n int) int {
				prev := cur
				if n > 0 {
					cur = n
				}
				return prev
			}
			getenv := func(k string) string {
				if k == "GOMAXPROCS" {
					return tc.env
				}
				return ""
			}
			raiseProcs(getenv, set, slog.New(slog.DiscardHandler))
			if cur != tc.want {
				t.Errorf("GOMAXPROCS %d, want %d", cur, tc.want)
			}
		})
	}
}
