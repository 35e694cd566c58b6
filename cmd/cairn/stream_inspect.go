package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// This file reads the streaming query of a checkpoint location (a
// metadata object, the offsets and commits logs, the operators' state
// stores) for 'checkpoint inspect' and 'checkpoint verify'.

// hasObject reports whether name is in the listing.
func hasObject(objs []storage.ObjectInfo, name string) bool {
	_, found := slices.BinarySearchFunc(objs, name, func(o storage.ObjectInfo, n string) int { return strings.Compare(o.Name, n) })
	return found
}

// queryLogs is where a query's logs stand, as Start reads them.
type queryLogs struct {
	offsets, commits       *metalog.Log // nil when the log cannot be opened
	offsetsErr, commitsErr error
	lastOff, lastCommit    int64
	hasOff, hasCommit      bool
}

func openQueryLogs(ctx context.Context, s storage.Storage) queryLogs {
	var q queryLogs
	q.offsets, q.offsetsErr = metalog.Open(ctx, s, stream.OffsetsLog)
	q.commits, q.commitsErr = metalog.Open(ctx, s, stream.CommitsLog)
	if q.offsets != nil {
		q.lastOff, q.hasOff = q.offsets.Latest()
	}
	if q.commits != nil {
		q.lastCommit, q.hasCommit = q.commits.Latest()
	}
	return q
}

// pending returns the batch written ahead and not committed, if any: the
// last offsets entry when the commits log ends before it.
func (q queryLogs) pending() (int64, bool) {
	if q.offsets == nil || q.commits == nil || !q.hasOff {
		return 0, false
	}
	if !q.hasCommit || q.lastOff > q.lastCommit {
		return q.lastOff, true
	}
	return 0, false
}

// streamInfo is the "stream" field of the inspect document: the streaming
// query of the location. Field names are a stable interface.
type streamInfo struct {
	QueryID       string          `json:"query_id"`
	Created       *time.Time      `json:"created,omitempty"`
	CairnVersion  string          `json:"cairn_version"`
	Pinned        stream.Pinned   `json:"pinned"`
	Offsets       *batchRange     `json:"offsets"`
	Commits       *batchRange     `json:"commits"`
	LastCommitted *int64          `json:"last_committed_batch"`
	Pending       *int64          `json:"pending_batch"`
	Watermark     *int64          `json:"watermark_ms"`
	NextWatermark *int64          `json:"next_watermark_ms"`
	State         []operatorState `json:"state"`
	Errors        []string        `json:"errors,omitempty"`
}

// batchRange is the first and last entry of a log.
type batchRange struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// operatorState is the state of one stateful operator at its stores'
// latest versions.
type operatorState struct {
	Operator    int64  `json:"operator"`
	Kind        string `json:"kind"`
	Stores      int    `json:"stores"`
	Keys        int64  `json:"keys"`
	StateBytes  int64  `json:"state_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	Error       string `json:"error,omitempty"`
}

func logRange(l *metalog.Log) *batchRange {
	if l == nil {
		return nil
	}
	last, ok := l.Latest()
	if !ok {
		return nil
	}
	first, _ := l.Earliest()
	return &batchRange{First: first, Last: last}
}

// describeStream describes the streaming query of s, or returns nil when
// the listing has no metadata object. What cannot be read is in Errors;
// stores are the location's stores as inspect described them.
func describeStream(ctx context.Context, s storage.Storage, objs []storage.ObjectInfo, stores []storeInfo) *streamInfo {
	if !hasObject(objs, stream.MetadataObject) {
		return nil
	}
	si := &streamInfo{State: []operatorState{}}
	fail := func(format string, a ...any) { si.Errors = append(si.Errors, fmt.Sprintf(format, a...)) }
	meta, err := stream.ReadMetadata(ctx, s)
	if err != nil {
		fail("%s: %s", stream.MetadataObject, describeObjectErr(stream.MetadataObject, err))
	} else {
		si.QueryID, si.CairnVersion, si.Pinned = meta.QueryID, meta.CairnVersion, meta.Pinned
		if !meta.Created.IsZero() {
			created := meta.Created
			si.Created = &created
		}
	}
	if si.Pinned.Operators == nil {
		si.Pinned.Operators = []stream.OperatorInfo{}
	}

	q := openQueryLogs(ctx, s)
	for _, err := range []error{q.offsetsErr, q.commitsErr} {
		if err != nil {
			fail("%s", strings.TrimPrefix(err.Error(), "metalog: "))
		}
	}
	si.Offsets, si.Commits = logRange(q.offsets), logRange(q.commits)
	if q.hasCommit {
		last := q.lastCommit
		si.LastCommitted = &last
		if c, err := stream.ReadCommitEntry(ctx, q.commits, last); err != nil {
			fail("%s: %s", q.commits.Object(last), describeObjectErr(q.commits.Object(last), err))
		} else {
			si.NextWatermark = &c.NextWatermark
		}
	}
	if p, ok := q.pending(); ok {
		si.Pending = &p
		if q.hasCommit && p > q.lastCommit+1 || !q.hasCommit && p > 0 {
			fail("offsets run to batch %d but commits only to %s: more than one batch is pending, which one writer never leaves; run 'cairn checkpoint verify'",
				p, optBatch(si.LastCommitted))
		}
	}
	if q.hasOff {
		if e, err := stream.ReadOffsetsEntry(ctx, q.offsets, q.lastOff); err != nil {
			fail("%s: %s", q.offsets.Object(q.lastOff), describeObjectErr(q.offsets.Object(q.lastOff), err))
		} else {
			si.Watermark = &e.Watermark
		}
	}

	for _, op := range si.Pinned.Operators {
		if !op.Stateful() {
			continue
		}
		ost := operatorState{Operator: op.ID, Kind: op.Kind}
		for _, st := range stores {
			if st.Operator != op.ID {
				continue
			}
			ost.Stores++
			ost.StoredBytes += st.Bytes
			keys, bytes, err := storeSize(ctx, s, st)
			if err != nil && ost.Error == "" {
				ost.Error = st.Dir + ": " + err.Error()
			}
			ost.Keys += keys
			ost.StateBytes += bytes
		}
		si.State = append(si.State, ost)
	}
	return si
}

// storeSize loads the latest version of a store read-only and returns its
// keys and the provider's estimate of its size in memory.
func storeSize(ctx context.Context, s storage.Storage, st storeInfo) (keys, bytes int64, err error) {
	if st.Error != "" {
		return 0, 0, errors.New(st.Error)
	}
	id := state.StoreID{Operator: st.Operator, Partition: st.Partition, Name: st.Name}
	p, err := state.Open(ctx, st.Provider, s, id, state.Schema{Key: st.KeySchema, Value: st.ValueSchema}, state.Options{MaintenanceInterval: -1})
	if err != nil {
		return 0, 0, fmt.Errorf("cannot open: %w", err)
	}
	defer p.Close()
	latest, err := p.LatestVersion(ctx)
	if err != nil {
		return 0, 0, err
	}
	rs, err := p.GetReadStore(ctx, latest)
	if err != nil {
		return 0, 0, fmt.Errorf("latest version %d cannot be loaded: %w", latest, err)
	}
	defer rs.Abort()
	m := rs.Metrics()
	return m.Keys, m.MemoryBytes, nil
}

// describeObjectErr says what is wrong with an object: the reason of the
// *storage.CorruptError that names it, or the whole error.
func describeObjectErr(object string, err error) string {
	var ce *storage.CorruptError
	if errors.As(err, &ce) && ce.Object == object {
		return describeErr(object, ce)
	}
	return err.Error()
}

func optBatch(b *int64) string {
	if b == nil {
		return "none"
	}
	return strconv.FormatInt(*b, 10)
}

// formatWatermark shows a watermark (Unix ms) as a time.
func formatWatermark(ms int64) string {
	switch ms {
	case 0:
		return "none (no event time seen, or no operator on event time)"
	case math.MaxInt64:
		return "end of input (the drain batch: every window closes)"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func msDuration(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

func printStream(w io.Writer, si *streamInfo) {
	fmt.Fprintf(w, "\nStreaming query %s:\n", dash(si.QueryID))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	created := "-"
	if si.Created != nil {
		created = si.Created.UTC().Format(time.RFC3339)
	}
	row("created", fmt.Sprintf("%s by cairn %s", created, dash(si.CairnVersion)))
	row("partitions", strconv.Itoa(si.Pinned.Partitions))
	row("state provider", dash(si.Pinned.StateProvider))
	row("source", dash(si.Pinned.Source))
	row("sink", dash(si.Pinned.Sink))
	rangeText := func(r *batchRange) string {
		switch {
		case r == nil:
			return "empty"
		case r.First == r.Last:
			return fmt.Sprintf("batch %d", r.First)
		}
		return fmt.Sprintf("batches %d to %d", r.First, r.Last)
	}
	row("offsets log", rangeText(si.Offsets))
	row("commits log", rangeText(si.Commits))
	if si.LastCommitted != nil {
		row("last committed", fmt.Sprintf("batch %d", *si.LastCommitted))
	} else {
		row("last committed", "none")
	}
	if si.Pending != nil {
		row("pending batch", fmt.Sprintf("%d: written ahead, not committed; the next start replays it", *si.Pending))
	} else {
		row("pending batch", "none")
	}
	if si.Watermark != nil && si.Offsets != nil {
		row("watermark", fmt.Sprintf("%s, of batch %d", formatWatermark(*si.Watermark), si.Offsets.Last))
	} else {
		row("watermark", "-")
	}
	if si.NextWatermark != nil && si.LastCommitted != nil {
		row("next watermark", fmt.Sprintf("%s, from commit %d", formatWatermark(*si.NextWatermark), *si.LastCommitted))
	} else {
		row("next watermark", "-")
	}
	tw.Flush()

	if len(si.Pinned.Operators) == 0 {
		fmt.Fprint(w, "\nOperators: none\n")
	} else {
		sizes := map[int64]operatorState{}
		for _, ost := range si.State {
			sizes[ost.Operator] = ost
		}
		fmt.Fprintf(w, "\nOperators (%d):\n", len(si.Pinned.Operators))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tKEY\tVALUE\tWATERMARK DELAY\tWINDOW\tSTORES\tKEYS\tSTATE\tSTORED")
		for _, op := range si.Pinned.Operators {
			delay, window := "-", "-"
			if op.WatermarkDelay != nil {
				delay = msDuration(*op.WatermarkDelay)
			}
			if op.WindowSize > 0 {
				window = "tumbling " + msDuration(op.WindowSize)
				if op.WindowSlide > 0 && op.WindowSlide != op.WindowSize {
					window = fmt.Sprintf("%s every %s", msDuration(op.WindowSize), msDuration(op.WindowSlide))
				}
			}
			stores, keys, stateBytes, stored := "-", "-", "-", "-"
			if ost, ok := sizes[op.ID]; ok {
				stores = fmt.Sprintf("%d/%d", ost.Stores, si.Pinned.Partitions)
				keys, stateBytes, stored = strconv.FormatInt(ost.Keys, 10), humanBytes(ost.StateBytes), humanBytes(ost.StoredBytes)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", op.ID, op.Kind, dash(op.KeySchema), dash(op.ValueSchema),
				delay, window, stores, keys, stateBytes, stored)
		}
		tw.Flush()
		for _, ost := range si.State {
			if ost.Error != "" {
				fmt.Fprintf(w, "operator %d: %s\n", ost.Operator, ost.Error)
			}
		}
	}
	for _, e := range si.Errors {
		fmt.Fprintf(w, "problem: %s\n", e)
	}
}
