// Package clicks is cairn's reference streaming job, shared by
// examples/clickstream, its torture test and the demo: per user and
// one-minute tumbling window of event time, the number of click events and
// the sum of their amounts, with a 30-second watermark, in append mode.
package clicks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/stream"

	_ "github.com/cairn-data/cairn/state/pebblestate" // -state pebble
)

// Event is one click: {"user": "u17", "ts": "2026-01-01T00:00:03.120Z", "amount": 150}.
type Event struct {
	User   string    `json:"user" cairn:"required"`
	TS     time.Time `json:"ts" cairn:"required"`
	Amount int64     `json:"amount"`
}

// Row is one output line: {"user": "u17", "window_start": "...", "window_end": "...", "events": 12, "amount": 1800}.
type Row struct {
	User        string    `json:"user" parquet:"user"`
	WindowStart time.Time `json:"window_start" parquet:"window_start"`
	WindowEnd   time.Time `json:"window_end" parquet:"window_end"`
	Events      int64     `json:"events" parquet:"events"`
	Amount      int64     `json:"amount" parquet:"amount"`
}

type totals struct {
	Events int64 `json:"events"`
	Amount int64 `json:"amount"`
}

// Delay is the watermark delay: events may arrive this much out of order.
const Delay = 30 * time.Second

// Plan is the job.
func Plan(b *stream.Batch, in *dataset.Dataset[Event]) (*dataset.Dataset[Row], error) {
	w, err := stream.WindowAggregate(b, 1, in, stream.Window{Size: time.Minute}, Delay,
		func(e Event) time.Time { return e.TS },
		func(e Event) string { return e.User },
		func(e Event) totals { return totals{1, e.Amount} },
		func(a, b totals) totals { return totals{a.Events + b.Events, a.Amount + b.Amount} },
		state.StringCodec{}, state.JSONCodec[totals]{})
	if err != nil {
		return nil, err
	}
	return dataset.Map(w, func(r stream.Windowed[string, totals]) Row {
		return Row{User: r.Key, WindowStart: r.Start, WindowEnd: r.End, Events: r.Value.Events, Amount: r.Value.Amount}
	}), nil
}

// Options are the job's settings, as the example's flags give them.
type Options struct {
	Input, Output, Checkpoint string
	Trigger                   stream.Trigger
	MaxFilesPerBatch          int
	StateProvider             string
	// DeadLetter is the directory (or storage URL) where input lines that
	// do not decode, and input files that cannot be decoded at all, are set
	// aside (stream.FileSourceOptions.DeadLetterLocation); "" fails the job
	// on the first of them, naming the file and line.
	DeadLetter string
	Logger     *slog.Logger // per-batch progress; default slog.Default()
}

// Run runs the job until the trigger stops it or ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	src, err := stream.NewFileSource[Event](o.Input, stream.FileSourceOptions{Format: "jsonl", MaxFilesPerBatch: o.MaxFilesPerBatch,
		DeadLetterLocation: o.DeadLetter, Logger: o.Logger})
	if err != nil {
		return err
	}
	sink, err := stream.NewFileSink[Row](o.Output, stream.FileSinkOptions{Format: "jsonl"})
	if err != nil {
		return err
	}
	defer sink.Close()
	provider := o.StateProvider
	if provider == "memory" {
		provider = "memstate"
	}
	q, err := stream.Start(ctx, src, Plan, sink, stream.Options{Checkpoint: o.Checkpoint, Trigger: o.Trigger, StateProvider: provider, Logger: o.Logger})
	if err != nil {
		return err
	}
	runErr := q.Run(ctx)
	if err := q.Close(context.WithoutCancel(ctx)); runErr == nil {
		runErr = err
	}
	return runErr
}

// Generate writes events for `files` files of `perFile` events each into
// dir, in time order with disorder of at most 20 s (under Delay), 5000
// users, starting at 2026-01-01T00:00:00Z and spread over span. Files are
// written elsewhere and renamed into dir, as a file source requires. It
// returns the events, for the oracle.
func Generate(dir string, seed uint64, files, perFile int, span time.Duration) ([]Event, error) {
	rng := rand.New(rand.NewPCG(seed, 0))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	total := files * perFile
	step := span / time.Duration(max(total, 1))
	var all []Event
	tmp := filepath.Join(dir, ".incoming")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for f := range files {
		name := fmt.Sprintf("clicks-%05d.jsonl", f)
		path := filepath.Join(tmp, name)
		out, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		w := bufio.NewWriter(out)
		enc := json.NewEncoder(w)
		for i := range perFile {
			n := f*perFile + i
			jitter := time.Duration(rng.IntN(20_000)) * time.Millisecond
			e := Event{User: fmt.Sprintf("u%d", rng.IntN(5000)), TS: base.Add(time.Duration(n)*step + jitter).Truncate(time.Millisecond), Amount: int64(rng.IntN(500))}
			if err := enc.Encode(e); err != nil {
				return nil, err
			}
			all = append(all, e)
		}
		if err := w.Flush(); err != nil {
			return nil, err
		}
		if err := out.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(path, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return all, os.Remove(tmp)
}

// Oracle is the plain group-by the job must reproduce when the input's
// disorder stays under Delay and the run ends with a drain.
func Oracle(events []Event) map[Key]Row {
	out := map[Key]Row{}
	for _, e := range events {
		start := e.TS.Truncate(time.Minute)
		k := Key{e.User, start}
		r := out[k]
		out[k] = Row{User: e.User, WindowStart: start, WindowEnd: start.Add(time.Minute), Events: r.Events + 1, Amount: r.Amount + e.Amount}
	}
	return out
}

// Key identifies an output row.
type Key struct {
	User  string
	Start time.Time
}
