package metricstore

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/storage/diskguard"
)

// TestAppenderRefusesOnLowDisk: below the reserve nothing is appended and
// nothing reaches the WAL (no commit, no rollback); with room, samples are
// stored.
func TestAppenderRefusesOnLowDisk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reserve int64
		wantErr error
		want    int
	}{
		{"no reserve", 0, nil, 1},
		{"room above the reserve", 1, nil, 1},
		{"below the reserve", 1 << 62, diskguard.ErrLowDisk, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Config{Path: t.TempDir(), Retention: time.Hour, MinFreeBytes: tc.reserve}, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			app := s.Appender(context.Background())
			now := time.Now().UnixMilli()
			_, aerr := app.Append(0, labels.FromStrings("__name__", "x"), now, 1)
			cerr := app.Commit()
			if !errors.Is(aerr, tc.wantErr) || !errors.Is(cerr, tc.wantErr) || (tc.wantErr == nil && (aerr != nil || cerr != nil)) {
				t.Fatalf("append %v, commit %v; want %v", aerr, cerr, tc.wantErr)
			}
			if got := s.Head().NumSeries(); got != uint64(tc.want) {
				t.Errorf("%d series in the head, want %d", got, tc.want)
			}
		})
	}
}
