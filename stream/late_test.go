package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

var lateBase = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

// lateQuery runs perUserMinute over two on-time events, then over `more`
// (in one batch), and returns the query's progress and log.
func lateQuery(t *testing.T, opts Options, more ...event) ([]BatchProgress, string, error) {
	t.Helper()
	ctx := context.Background()
	src := NewMemorySource[event]("events", 1)
	src.Add(0, event{"a", lateBase, 1}, event{"a", lateBase.Add(5 * time.Minute), 1})
	var log bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
	opts.Trigger = Trigger{UntilIdle: true}
	q, err := Start(ctx, src, perUserMinute, NewMemorySink[Windowed[string, totals]]("out"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	src.Add(0, more...)
	_, err = q.RunBatch(ctx)
	return q.Progress(), log.String(), err
}

// Late rows are counted per operator, and a batch that drops more than
// LateWarnFraction of its input as late says so in a WARN naming the
// operator and the watermark.
func TestLateRowsAreCountedPerOperatorAndWarnedAbout(t *testing.T) {
	late := event{"a", lateBase.Add(time.Minute), 100} // 4 minutes behind the newest: late
	onTime := event{"b", lateBase.Add(5 * time.Minute), 1}
	for _, c := range []struct {
		name     string
		fraction float64
		more     []event
		warn     bool
	}{
		{"all late", 0, []event{late}, true},
		{"one of 4 late, default 1%", 0, []event{late, onTime, onTime, onTime}, true},
		{"one of 4 late, threshold 30%", 0.3, []event{late, onTime, onTime, onTime}, false},
		{"one of 4 late, never", -1, []event{late, onTime, onTime, onTime}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := windowOptions(storage.NewMem())
			opts.LateWarnFraction = c.fraction
			p, log, err := lateQuery(t, opts, c.more...)
			if err != nil {
				t.Fatal(err)
			}
			last := p[len(p)-1]
			if last.LateRows != 1 || len(last.State) != 1 || last.State[0].LateRows != 1 || last.State[0].Kind != "WindowAggregate" {
				t.Fatalf("progress: late rows %d, operators %+v; want 1, counted on operator 1 (WindowAggregate)", last.LateRows, last.State)
			}
			if !strings.Contains(log, "late_rows=1") {
				t.Errorf("the progress line does not count the late row:\n%s", log)
			}
			warned := strings.Contains(log, "level=WARN")
			if warned != c.warn {
				t.Fatalf("WARN logged: %v, want %v:\n%s", warned, c.warn, log)
			}
			if c.warn {
				wm := time.UnixMilli(last.Watermark).UTC().Format(time.RFC3339Nano)
				for _, say := range []string{"operator 1 (WindowAggregate)", "watermark " + wm, "Options.LateRows", "watermark delay"} {
					if !strings.Contains(log, say) {
						t.Errorf("the WARN does not say %q:\n%s", say, log)
					}
				}
			}
		})
	}
}

// With Options.LateRows, late rows go there, with what a user needs to
// see why, and a replayed batch writes them once.
func TestLateRowsGoToTheirSinkExactlyOnce(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	dir := t.TempDir()
	lateSink, err := NewFileSink[LateRow](dir, FileSinkOptions{Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	defer lateSink.Close()
	opts := windowOptions(st)
	opts.LateRows = lateSink
	late := event{"a", lateBase.Add(time.Minute), 100}
	p, _, err := lateQuery(t, opts, late, event{"b", lateBase.Add(6 * time.Minute), 1})
	if err != nil {
		t.Fatal(err)
	}
	batch := p[len(p)-1].Batch
	// A crash before the commit: the batch is replayed on restart.
	if err := st.Delete(ctx, fmt.Sprintf("%s/%d", CommitsLog, batch)); err != nil {
		t.Fatal(err)
	}
	restartAfterCrash(ctx, nopCloser{}, st)
	src := NewMemorySource[event]("events", 1)
	src.Add(0, event{"a", lateBase, 1}, event{"a", lateBase.Add(5 * time.Minute), 1}, late, event{"b", lateBase.Add(6 * time.Minute), 1})
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.Trigger = Trigger{UntilIdle: true}
	q, err := Start(ctx, src, perUserMinute, NewMemorySink[Windowed[string, totals]]("out"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if rp := q.Progress(); len(rp) != 1 || !rp[0].Replay || rp[0].LateRows != 1 {
		t.Fatalf("progress after restart = %+v; want the replay of batch %d with its late row", rp, batch)
	}
	var rows []LateRow
	for r, err := range ReadFileSink[LateRow](ctx, dir) {
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 1 {
		t.Fatalf("the late-row sink holds %d rows, want the one late row once: %+v", len(rows), rows)
	}
	r := rows[0]
	var rec event
	if err := json.Unmarshal(r.Record, &rec); err != nil || rec != late {
		t.Fatalf("record %s (%v); want the late event %+v", r.Record, err, late)
	}
	wantWM := lateBase.Add(5*time.Minute - 30*time.Second)
	if r.Batch != batch || r.Operator != 1 || r.Kind != "WindowAggregate" || r.Reason != LateReason ||
		!r.EventTime.Equal(late.TS) || !r.Watermark.Equal(wantWM) {
		t.Fatalf("late row %+v; want batch %d, operator 1 (WindowAggregate), reason late, event time %v, watermark %v", r, batch, late.TS, wantWM)
	}
}

// watermarkDedupPlan drops duplicate users within 10 minutes, after WithWatermark.
func watermarkDedupPlan(b *Batch, in *dataset.Dataset[event]) (*dataset.Dataset[event], error) {
	ts := func(e event) time.Time { return e.TS }
	w, err := WithWatermark(b, 1, in, ts, time.Minute)
	if err != nil {
		return nil, err
	}
	return DropDuplicates(b, 2, w, 10*time.Minute, ts, func(e event) string { return e.User }, state.StringCodec{})
}

// dedupOnlyPlan is watermarkDedupPlan without WithWatermark, so that the zero
// event time reaches DropDuplicates.
func dedupOnlyPlan(b *Batch, in *dataset.Dataset[event]) (*dataset.Dataset[event], error) {
	return DropDuplicates(b, 2, in, 10*time.Minute, func(e event) time.Time { return e.TS }, func(e event) string { return e.User }, state.StringCodec{})
}

// A record whose event time is zero is a bad record: it fails the batch
// naming the operator and the record, or, with Options.LateRows, goes
// there and is counted; it never vanishes as late.
func TestZeroEventTimeIsABadRecord(t *testing.T) {
	ctx := context.Background()
	bad := event{User: "no-time", Amount: 7}
	good := event{"a", lateBase, 1}
	cases := []struct {
		name   string
		run    func(opts Options) ([]BatchProgress, error)
		op     int64
		kind   string
		badIdx int // index of the operator in the progress
	}{
		{"WindowAggregate", func(opts Options) ([]BatchProgress, error) {
			return runPlan(ctx, opts, perUserMinute, good, bad)
		}, 1, "WindowAggregate", 0},
		{"WithWatermark", func(opts Options) ([]BatchProgress, error) {
			return runPlan(ctx, opts, watermarkDedupPlan, good, bad)
		}, 1, "Watermark", 0},
		{"DropDuplicates", func(opts Options) ([]BatchProgress, error) {
			return runPlan(ctx, opts, dedupOnlyPlan, good, bad)
		}, 2, "DropDuplicates", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.run(windowOptions(storage.NewMem()))
			var oe *OperatorError
			if !errors.As(err, &oe) || oe.Operator != c.op || oe.Kind != c.kind || oe.Batch != 0 {
				t.Fatalf("err = %v; want an OperatorError of operator %d (%s) in batch 0", err, c.op, c.kind)
			}
			prefix := fmt.Sprintf("stream: batch 0: operator %d (%s), partition 0: check event time", c.op, c.kind)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), `"User":"no-time"`) || !strings.Contains(err.Error(), "Options.LateRows") {
				t.Fatalf("err = %v; want it to start %q and name the record and Options.LateRows", err, prefix)
			}

			aside := NewMemorySink[LateRow]("late")
			opts := windowOptions(storage.NewMem())
			opts.LateRows = aside
			p, err := c.run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) == 0 || p[0].BadRows != 1 || p[0].State[c.badIdx].BadRows != 1 {
				t.Fatalf("progress %+v; want one bad row on operator %d", p, c.op)
			}
			rows := aside.All()
			if len(rows) != 1 || rows[0].Reason != ZeroEventTimeReason || rows[0].Operator != c.op || !strings.Contains(string(rows[0].Record), `"no-time"`) {
				t.Fatalf("late-row sink holds %+v; want the bad record, reason %q", rows, ZeroEventTimeReason)
			}
		})
	}
}

// runPlan runs plan over recs in one partition until drained.
func runPlan[Out any](ctx context.Context, opts Options, plan Plan[event, Out], recs ...event) ([]BatchProgress, error) {
	src := NewMemorySource[event]("events", 1)
	src.Add(0, recs...)
	q, err := Start(ctx, src, plan, NewMemorySink[Out]("out"), opts)
	if err != nil {
		return nil, err
	}
	defer q.Close(ctx)
	err = q.Run(ctx)
	return q.Progress(), err
}

// A state failure under a file sink is reported as the operator's, with
// its partition and batch first, not as the sink's part file; the cause
// stays in the chain.
func TestOperatorFailureIsReportedBeforeTheSink(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	src := NewMemorySource[click]("clicks", 3)
	clicks(2, src, 300)
	sink, err := NewFileSink[dataset.Pair[string, int64]](t.TempDir(), FileSinkOptions{Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := q.RunBatch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	q.Close(ctx)
	if err := st.Corrupt("state/1/0/3.delta", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }); err != nil {
		t.Fatal(err)
	}
	q, err = Start(ctx, src, sumPerUser, sink, testOptions(st))
	if err == nil {
		defer q.Close(ctx)
		_, err = q.RunBatch(ctx)
	}
	var oe *OperatorError
	var ce *storage.CorruptError
	if !errors.As(err, &oe) || oe.Operator != 1 || oe.Kind != "AggregateByKey" || oe.Partition != 0 || oe.Batch != 3 || !errors.As(err, &ce) {
		t.Fatalf("err = %v; want an OperatorError of operator 1, partition 0, batch 3, wrapping the CorruptError", err)
	}
	if prefix := "stream: batch 3: operator 1 (AggregateByKey), partition 0: open state"; !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("err = %v; want it to start %q", err, prefix)
	}
}

// A bad input record is the source's failure: the error names the source,
// the file and the line first, not the sink's part file that was being
// computed when it surfaced.
func TestSourceFailureIsReportedBeforeTheSink(t *testing.T) {
	ctx := context.Background()
	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "a.jsonl"), []byte("{\"user\":\"a\"}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := NewFileSource[click](in, FileSourceOptions{Format: "jsonl", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewFileSink[dataset.Pair[string, int64]](t.TempDir(), FileSinkOptions{Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	q, err := Start(ctx, src, sumPerUser, sink, testOptions(storage.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	_, err = q.RunBatch(ctx)
	var se *SourceError
	var re *dataset.RecordError
	if !errors.As(err, &se) || se.Batch != 0 || se.Partition != 0 || !errors.As(err, &re) || re.Line != 2 {
		t.Fatalf("err = %v; want a SourceError of batch 0, partition 0, wrapping the RecordError of line 2", err)
	}
	if prefix := "stream: batch 0: source files:jsonl:"; !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("err = %v; want it to start %q", err, prefix)
	}
}
