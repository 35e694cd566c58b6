package stream

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// LateRow is a record that a stateful operator set aside instead of
// processing it: later than the batch's watermark (Reason "late"), or
// with a zero event time (Reason "zero event time", a bad record). With
// Options.LateRows, each batch's late rows are written to that sink with
// the batch ID; without it, late rows are dropped and counted, and a zero
// event time fails the batch. One JSON line of a FileSink[LateRow]:
//
//	{"batch":7,"operator":1,"kind":"WindowAggregate","reason":"late","event_time":"2026-01-01T00:01:00Z","watermark":"2026-01-01T00:04:30Z","record":{"User":"a","TS":"2026-01-01T00:01:00Z","Amount":100}}
type LateRow struct {
	Batch    int64  `json:"batch" parquet:"batch"`
	Operator int64  `json:"operator" parquet:"operator"`
	Kind     string `json:"kind" parquet:"kind"`
	// Reason is LateReason or ZeroEventTimeReason.
	Reason    string    `json:"reason" parquet:"reason"`
	EventTime time.Time `json:"event_time" parquet:"event_time"`
	Watermark time.Time `json:"watermark" parquet:"watermark"`
	// Record is the record as JSON (encoding/json of the operator's input
	// type; a record that does not encode is a JSON string of its Go
	// syntax).
	Record json.RawMessage `json:"record" parquet:"record"`
}

// Reasons of a LateRow.
const (
	LateReason          = "late"
	ZeroEventTimeReason = "zero event time"
)

// OperatorError is the failure of an operator, or of its state store, in
// one partition of a batch. Operators run while the sink computes the
// batch, so the sink's error wraps it; the query reports the operator
// first. Find it with errors.As.
type OperatorError struct {
	Batch    int64
	Operator int64
	Kind     string
	// Partition is the partition being processed: of the operator's state
	// for a stateful step, of its input for a per-record check.
	Partition int
	// Doing is what failed: "open state", "process records", "commit
	// state", "check event time".
	Doing string
	Err   error
}

func (e *OperatorError) Error() string {
	return fmt.Sprintf("stream: batch %d: operator %d (%s), partition %d: %s: %v", e.Batch, e.Operator, e.Kind, e.Partition, e.Doing, e.Err)
}

// Unwrap returns the cause.
func (e *OperatorError) Unwrap() error { return e.Err }

// SourceError is a failure of a query's source while it read a batch (a
// bad input record or file, a file changed since it was taken). The
// query reports it first, before the sink whose computation of the batch
// surfaced it.
type SourceError struct {
	Batch     int64
	Source    string // the source's Identity
	Partition int    // the source partition being read
	Err       error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("stream: batch %d: source %s, partition %d: %v", e.Batch, e.Source, e.Partition, e.Err)
}

// Unwrap returns the cause.
func (e *SourceError) Unwrap() error { return e.Err }

// surfacedError is an operator's or source's failure that reached the
// query through a sink: its message puts the operator or source first, and
// it unwraps to the whole chain the sink returned.
type surfacedError struct {
	op  error
	via string
	err error
}

func (e *surfacedError) Error() string {
	return e.op.Error() + " (the batch failed there while " + e.via + " computed it)"
}

func (e *surfacedError) Unwrap() error { return e.err }

// aside counts, and with Options.LateRows keeps, the rows one operator
// sets aside in one partition of a batch. A partition computed again
// replaces its figures, so a recomputation does not count twice.
type aside struct {
	b         *Batch
	op        int64
	kind      string
	part      int
	late, bad int64
	rows      []LateRow
	maxSeen   int64 // greatest event time placed, Unix ms; math.MinInt64: none
}

type asideKey struct {
	op   int64
	part int
}

// setAside starts the tally of operator op in partition part; done
// records it.
func (b *Batch) setAside(op int64, part int) *aside {
	return &aside{b: b, op: op, kind: b.kind(op), part: part, maxSeen: math.MinInt64}
}

func (b *Batch) kind(op int64) string {
	for _, o := range b.ops {
		if o.ID == op {
			return o.Kind
		}
	}
	return ""
}

// lateRow records a record later than the watermark.
func (a *aside) lateRow(rec any, eventMs int64) {
	a.late++
	if a.b.keepAside {
		a.rows = append(a.rows, a.row(rec, LateReason, time.UnixMilli(eventMs).UTC()))
	}
}

// zeroEventTime handles a record whose event time is zero: without
// Options.LateRows it is an *OperatorError that fails the batch, naming
// the record; with it, the record is set aside and counted.
func (a *aside) zeroEventTime(rec any) error {
	if !a.b.keepAside {
		js := recordJSON(rec)
		if len(js) > 1024 {
			js = append(js[:1024:1024], "..."...)
		}
		return &OperatorError{Batch: a.b.ID, Operator: a.op, Kind: a.kind, Partition: a.part, Doing: "check event time",
			Err: fmt.Errorf("a record has a zero event time (the event-time function returned time.Time{}), so it cannot be placed in event time: %s; "+
				"it is a bad record: fix the input or the event-time function, or set Options.LateRows to set such records aside (counted as bad rows) and go on", js)}
	}
	a.bad++
	a.rows = append(a.rows, a.row(rec, ZeroEventTimeReason, time.Time{}))
	return nil
}

func (a *aside) row(rec any, reason string, et time.Time) LateRow {
	return LateRow{Batch: a.b.ID, Operator: a.op, Kind: a.kind, Reason: reason, EventTime: et,
		Watermark: time.UnixMilli(a.b.watermark).UTC(), Record: recordJSON(rec)}
}

// done records the partition's tally in the batch, replacing an earlier
// computation of the same partition, and the greatest event time it saw.
func (a *aside) done() {
	if a.maxSeen != math.MinInt64 {
		a.b.observeEventTime(a.op, a.maxSeen)
	}
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	if a.b.aside == nil {
		a.b.aside = map[asideKey]*aside{}
	}
	a.b.aside[asideKey{a.op, a.part}] = a
}

func recordJSON(rec any) json.RawMessage {
	if js, err := json.Marshal(rec); err == nil {
		return js
	}
	js, _ := json.Marshal(fmt.Sprintf("%#v", rec))
	return js
}

// asideCounts returns operator op's late and bad rows in the batch.
func (b *Batch) asideCounts(op int64) (late, bad int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, a := range b.aside {
		if k.op == op {
			late += a.late
			bad += a.bad
		}
	}
	return late, bad
}

// asideRows returns the rows set aside in the batch, by operator, then
// partition, then arrival: the same order on every replay.
func (b *Batch) asideRows() []LateRow {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make([]asideKey, 0, len(b.aside))
	for k := range b.aside {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y asideKey) int {
		return cmp.Or(cmp.Compare(x.op, y.op), cmp.Compare(x.part, y.part))
	})
	var rows []LateRow
	for _, k := range keys {
		rows = append(rows, b.aside[k].rows...)
	}
	return rows
}
