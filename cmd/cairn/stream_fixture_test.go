package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
	"github.com/cairn-data/cairn/stream"
)

// clickEvent and clickTotals are the records of the streaming fixtures:
// events per user, summed per user and minute.
type clickEvent struct {
	User   string
	TS     time.Time
	Amount int64
}

type clickTotals struct {
	Events int64 `json:"events"`
	Amount int64 `json:"amount"`
}

type windowRow = stream.Windowed[string, clickTotals]

// perUserMinute is the fixture query: one-minute tumbling windows per
// user, 30 s of allowed lateness, operator ID 1.
func perUserMinute(b *stream.Batch, in *dataset.Dataset[clickEvent]) (*dataset.Dataset[windowRow], error) {
	return stream.WindowAggregate(b, 1, in, stream.Window{Size: time.Minute}, 30*time.Second,
		func(e clickEvent) time.Time { return e.TS },
		func(e clickEvent) string { return e.User },
		func(e clickEvent) clickTotals { return clickTotals{1, e.Amount} },
		func(a, b clickTotals) clickTotals { return clickTotals{a.Events + b.Events, a.Amount + b.Amount} },
		state.StringCodec{}, state.JSONCodec[clickTotals]{})
}

// Fixture sizes: 2 partitions of 240 events, 20 per partition and batch:
// 12 batches of input, then the drain batch.
const (
	fixtureEvents    = 480
	fixturePerBatch  = 20
	fixtureQueryID   = "0123456789abcdef0123456789abcdef"
	fixturePartition = 2
)

// fixtureEventsStart is the event time of the first event.
var fixtureEventsStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// streamFixture is a checkpoint location of the fixture query, left with a
// pending batch as a crash between the sink and the commit entry leaves it.
type streamFixture struct {
	dir     string // the checkpoint location
	sinkDir string // the file sink's location; "" with a memory sink
	src     *stream.MemorySource[clickEvent]
	want    map[[2]string]clickTotals // the plain group-by the output must equal
	pending int64                     // the batch written ahead and not committed
}

type streamConfig struct {
	fileSink bool
	// snapshotAfter > 0 runs that many batches, then snapshots every state
	// store at its latest version, as the query's maintenance would.
	snapshotAfter int64
	// pending is the batch whose commit entry the crash loses.
	pending int64
	// snapshotAtEnd snapshots every store at its latest version after the
	// crash: the version the pending batch committed.
	snapshotAtEnd bool
}

func (f *streamFixture) options(st storage.Storage) stream.Options {
	return stream.Options{Checkpoint: f.dir, CheckpointStorage: st, Partitions: fixturePartition, MaxOffsetsPerPartition: fixturePerBatch,
		Trigger: stream.Trigger{Drain: true}, Parallelism: 2, Logger: slog.New(slog.DiscardHandler)}
}

func (f *streamFixture) sink(t *testing.T) stream.Sink[windowRow] {
	t.Helper()
	if f.sinkDir == "" {
		return stream.NewMemorySink[windowRow]("out")
	}
	s, err := stream.NewFileSink[windowRow](f.sinkDir, stream.FileSinkOptions{Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// start starts the fixture query on the location (st nil: the directory).
func (f *streamFixture) start(t *testing.T, st storage.Storage) (*stream.Query[clickEvent, windowRow], error) {
	t.Helper()
	return stream.Start(context.Background(), f.src, perUserMinute, f.sink(t), f.options(st))
}

// buildStreamLocation runs the fixture query up to the crash that leaves
// batch cfg.pending written ahead, its state and sink output durable, and
// its commit entry lost; the dead process's lease is removed, as a
// restart on its machine would take it over.
func buildStreamLocation(t *testing.T, cfg streamConfig) *streamFixture {
	t.Helper()
	ctx := context.Background()
	f := &streamFixture{dir: filepath.Join(t.TempDir(), "checkpoint"), pending: cfg.pending,
		src: stream.NewMemorySource[clickEvent]("events", fixturePartition), want: map[[2]string]clickTotals{}}
	if cfg.fileSink {
		f.sinkDir = filepath.Join(t.TempDir(), "output")
	}
	for i := range fixtureEvents {
		// In order within a partition, 10 s apart, so windows close as
		// batches go.
		e := clickEvent{User: fmt.Sprint("u", i%3), TS: fixtureEventsStart.Add(time.Duration(i/2) * 10 * time.Second), Amount: int64(i % 7)}
		f.src.Add(i%2, e)
		k := [2]string{e.User, e.TS.Truncate(time.Minute).Format(time.RFC3339)}
		w := f.want[k]
		f.want[k] = clickTotals{w.Events + 1, w.Amount + e.Amount}
	}
	local, err := storage.OpenLocal(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if cfg.snapshotAfter > 0 {
		q, err := f.start(t, local)
		if err != nil {
			t.Fatal(err)
		}
		for range cfg.snapshotAfter {
			if _, err := q.RunBatch(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Close(ctx); err != nil {
			t.Fatal(err)
		}
		snapshotStores(t, local)
	}
	fs := faulty.New(local)
	fs.CrashAt(1, func(op faulty.Op) bool {
		return op.Kind == faulty.Put && op.Name == fmt.Sprintf("commits/%d", cfg.pending)
	})
	q, err := f.start(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = q.RunBatch(ctx); err != nil {
			break
		}
	}
	if !errors.Is(err, faulty.ErrCrashed) {
		t.Fatalf("the fixture query stopped with %v, want the crash at commits/%d", err, cfg.pending)
	}
	q.Close(ctx) // fails on the crashed storage: the lease stays behind
	if err := os.RemoveAll(filepath.Join(f.dir, "_lease")); err != nil {
		t.Fatal(err)
	}
	if cfg.snapshotAtEnd {
		snapshotStores(t, local)
	}
	return f
}

// snapshotStores writes a snapshot of the latest version of every state
// store of the location, as the query's maintenance does every
// SnapshotInterval versions.
func snapshotStores(t *testing.T, s storage.Storage) {
	t.Helper()
	ctx := context.Background()
	objs, err := s.List(ctx, "state/")
	if err != nil {
		t.Fatal(err)
	}
	stores, _ := findStores(objs)
	for _, st := range stores {
		meta, err := state.ReadMeta(ctx, s, st.id)
		if err != nil {
			t.Fatal(err)
		}
		p, err := state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{MaintenanceInterval: -1, SnapshotInterval: 1})
		if err != nil {
			t.Fatal(err)
		}
		latest, _ := p.LatestVersion(ctx)
		w, err := p.GetStore(ctx, latest) // loads the version maintenance snapshots
		if err != nil {
			t.Fatal(err)
		}
		w.Abort()
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if _, err := s.Get(ctx, fmt.Sprintf("%s/%d.snapshot", st.dir, latest)); err != nil {
			t.Fatalf("no snapshot of %s at version %d: %v", st.dir, latest, err)
		}
	}
}

// fixStreamClock rewrites the query's metadata and the stores' metadata
// with a fixed query ID and creation time, so that sizes, and the golden
// files, do not depend on the clock.
func fixStreamClock(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := stream.ReadMetadata(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	m.QueryID, m.Created = fixtureQueryID, fixtureCreated
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := frame.PutBytes(ctx, s, stream.MetadataObject, frame.KindQueryMeta, 1, data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "state/")
	if err != nil {
		t.Fatal(err)
	}
	stores, _ := findStores(objs)
	for _, st := range stores {
		meta, err := state.ReadMeta(ctx, s, st.id)
		if err != nil {
			t.Fatal(err)
		}
		fixedMeta(t, s, st.id, meta.Provider, meta.Schema)
	}
}

// resumeAndCheck starts the fixture query again on its location, runs it
// to the end and checks the file sink against the plain group-by.
func (f *streamFixture) resumeAndCheck(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	q, err := f.start(t, nil)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	ran, err := q.RunBatch(ctx)
	if err != nil || !ran {
		t.Fatalf("first batch after the restart: ran %v, err %v", ran, err)
	}
	if p := q.Progress(); len(p) != 1 || p[0].Batch != f.pending || !p[0].Replay {
		t.Fatalf("the first batch after the restart is %+v, want the replay of pending batch %d", p, f.pending)
	}
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if f.sinkDir == "" {
		return
	}
	got := map[[2]string]clickTotals{}
	for r, err := range stream.ReadFileSink[windowRow](ctx, f.sinkDir) {
		if err != nil {
			t.Fatal(err)
		}
		k := [2]string{r.Key, r.Start.UTC().Format(time.RFC3339)}
		if _, dup := got[k]; dup {
			t.Fatalf("window %v output twice", k)
		}
		got[k] = r.Value
	}
	if len(got) != len(f.want) {
		t.Fatalf("the sink holds %d windows, want %d", len(got), len(f.want))
	}
	for k, w := range f.want {
		if got[k] != w {
			t.Fatalf("window %v: %+v, want %+v", k, got[k], w)
		}
	}
}
