package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCloseWithin(t *testing.T) {
	errClose := errors.New("close failed")
	release := make(chan struct{})
	defer close(release)
	cases := []struct {
		name    string
		closeFn func() error
		budget  time.Duration
		want    error
	}{
		{"closes in time", func() error { return nil }, time.Second, nil},
		{"close error is returned", func() error { return errClose }, time.Second, errClose},
		{"stuck close is left at the deadline", func() error { <-release; return nil }, 50 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), c.budget)
		start := time.Now()
		err := closeWithin(ctx, "store", "test", c.closeFn)
		cancel()
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if time.Since(start) > c.budget+time.Second {
			t.Errorf("%s: took %v for a %v budget", c.name, time.Since(start), c.budget)
		}
	}
}
