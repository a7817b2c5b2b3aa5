package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meshlens/meshlens/demo"
)

// demoCmd plays the Bookinfo mesh against any Envoy ALS / Zipkin endpoint.
func demoCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshlens demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	als := fs.String("als", "127.0.0.1:11800", "Envoy ALS v3 gRPC server host:port (empty: no access logs)")
	zipkin := fs.String("zipkin", "http://127.0.0.1:9411", "Zipkin collector base URL (empty: no spans)")
	rate := fs.Float64("rate", 20, "ingress requests per second")
	seed := fs.Int64("seed", 1, "random seed; the same seed plays the same traffic")
	sampling := fs.Float64("trace-sampling", 1, "fraction of requests that send spans (0..1]")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 {
		return fmt.Errorf("--rate must be positive, got %v", *rate)
	}
	if *sampling <= 0 || *sampling > 1 {
		return fmt.Errorf("--trace-sampling must be in (0, 1], got %v", *sampling)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	logger := newLogger(stderr, "info", "text")
	g, err := demo.NewGenerator(demo.Config{
		ALSAddr: *als, ZipkinURL: *zipkin, Rate: *rate, Seed: *seed, TraceSampling: *sampling,
	}, logger)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			fmt.Fprintf(os.Stderr, "demo: %+v\n", g.Stats())
			return err
		case <-tick.C:
			logger.Info("demo traffic", "stats", fmt.Sprintf("%+v", g.Stats()))
		}
	}
}
