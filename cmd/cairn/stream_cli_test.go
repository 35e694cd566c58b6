package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/stream"
)

func TestInspectStream(t *testing.T) {
	t.Parallel()
	f := buildStreamLocation(t, streamConfig{pending: 3})
	fixStreamClock(t, f.dir)
	hide := func(s string) string { return strings.ReplaceAll(s, "file://"+f.dir, "file://LOCATION") }

	args := []string{"checkpoint", "inspect", f.dir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	golden(t, "inspect-stream.golden", hide(r.stdout))

	args = []string{"checkpoint", "inspect", "--json", f.dir}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	golden(t, "inspect-stream-json.golden", hide(r.stdout))
	var doc inspectDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output is not the documented JSON document: %v\n%s", err, r.stdout)
	}
	st := doc.Stream
	if st == nil {
		t.Fatalf("no stream field for a streaming query's location:\n%s", r.stdout)
	}
	switch p := st.Pinned; {
	case st.QueryID != fixtureQueryID || st.Created == nil || !st.Created.Equal(fixtureCreated) || st.CairnVersion != stream.Version:
		t.Errorf("query %q created %v by %q; want %q, %v, %q", st.QueryID, st.Created, st.CairnVersion, fixtureQueryID, fixtureCreated, stream.Version)
	case p.Partitions != fixturePartition || p.StateProvider != "memstate" || p.Source != "memory:events" || p.Sink != "memory:out":
		t.Errorf("pinned settings %+v, want 2 partitions, memstate, memory:events, memory:out", p)
	case len(p.Operators) != 1 || p.Operators[0].Kind != "WindowAggregate" || p.Operators[0].WatermarkDelay == nil ||
		*p.Operators[0].WatermarkDelay != 30_000 || p.Operators[0].WindowSize != 60_000:
		t.Errorf("pinned operators %+v, want one WindowAggregate with a 30 s delay and 1 min windows", p.Operators)
	}
	// Batches 0 to 2 committed, 3 written ahead: the crash took its commit.
	if st.Offsets == nil || *st.Offsets != (batchRange{0, 3}) || st.Commits == nil || *st.Commits != (batchRange{0, 2}) ||
		st.LastCommitted == nil || *st.LastCommitted != 2 || st.Pending == nil || *st.Pending != 3 {
		t.Errorf("offsets %v, commits %v, last committed %v, pending %v; want 0..3, 0..2, 2 and 3",
			st.Offsets, st.Commits, optBatch(st.LastCommitted), optBatch(st.Pending))
	}
	// Batches 0 to 2 read 60 events of each partition, the newest at
	// 590 s; minus the 30 s delay, the watermark of batch 3 is 560 s.
	want := fixtureEventsStart.Add(560 * time.Second).UnixMilli()
	if st.Watermark == nil || *st.Watermark != want || st.NextWatermark == nil || *st.NextWatermark != want {
		t.Errorf("watermark %v, next watermark %v; want both %d (%s)", st.Watermark, st.NextWatermark, want, formatWatermark(want))
	}
	// The state's keys, against what 'state read' prints.
	var keys int64
	for p := range fixturePartition {
		args := []string{"state", "read", f.dir, "--operator", "1", "--partition", strconv.Itoa(p)}
		r := cairn(t, args...)
		r.wantExit(t, 0, args...)
		keys += int64(strings.Count(r.stdout, "\n"))
	}
	var stored int64
	for _, s := range doc.Stores {
		stored += s.Bytes
	}
	if len(st.State) != 1 || st.State[0].Operator != 1 || st.State[0].Stores != 2 || st.State[0].Keys != keys || keys == 0 ||
		st.State[0].StoredBytes != stored || st.State[0].StateBytes <= 0 || st.State[0].Error != "" {
		t.Errorf("state %+v; want operator 1 with 2 stores, %d keys (as state read prints) and %d bytes stored", st.State, keys, stored)
	}
	var raw map[string]map[string]any
	json.Unmarshal([]byte(r.stdout), &raw)
	for _, k := range []string{"query_id", "created", "cairn_version", "pinned", "offsets", "commits", "last_committed_batch",
		"pending_batch", "watermark_ms", "next_watermark_ms", "state"} {
		if _, ok := raw["stream"][k]; !ok {
			t.Errorf("the stream field has no %q", k)
		}
	}

	// A location without a query has no stream field.
	args = []string{"checkpoint", "inspect", "--json", buildFixture(t)}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if strings.Contains(r.stdout, `"stream"`) {
		t.Errorf("a location without a metadata object has a stream field:\n%s", r.stdout)
	}
}

// TestVerifyStreamFindsDamage damages a streaming query's location or its
// file sink in one way at a time; verify must exit 1 with one line for
// each damaged object, saying what is wrong.
func TestVerifyStreamFindsDamage(t *testing.T) {
	t.Parallel()
	type want struct{ object, says string }
	offsetsEntry := func(t *testing.T, dir string, id int64) stream.OffsetsEntry {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "offsets", strconv.FormatInt(id, 10)))
		if err != nil {
			t.Fatal(err)
		}
		payload, _, err := frame.Decode(b, "offsets", frame.KindLogEntry, 2)
		if err != nil {
			t.Fatal(err)
		}
		var e stream.OffsetsEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	logEntry := func(v any) []byte {
		data, _ := json.Marshal(v)
		return frame.Encode(frame.KindLogEntry, 1, data)
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, f *streamFixture)
		want   []want
	}{
		{
			name: "byte flipped in an offsets entry",
			damage: func(t *testing.T, f *streamFixture) {
				rewrite(t, f.dir, "offsets/1", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
			},
			want: []want{{"offsets/1", "checksum mismatch"}},
		},
		{
			name: "first commit entry deleted, later ones kept",
			damage: func(t *testing.T, f *streamFixture) {
				remove(t, f.dir, "commits/0")
			},
			want: []want{{"commits/0", "missing: batch 0 has an offsets entry and batches up to 2 are committed"}},
		},
		{
			name: "commit entry deleted in the middle: a gap",
			damage: func(t *testing.T, f *streamFixture) {
				remove(t, f.dir, "commits/1")
			},
			want: []want{{"commits/1", "missing: log commits"}},
		},
		{
			name: "byte flipped in a sink part",
			damage: func(t *testing.T, f *streamFixture) {
				rewrite(t, f.sinkDir, "batch-0000000001/part-00001.jsonl", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
			},
			want: []want{{"sink batch-0000000001/part-00001.jsonl", "CRC32C"}},
		},
		{
			name: "sink part truncated",
			damage: func(t *testing.T, f *streamFixture) {
				rewrite(t, f.sinkDir, "batch-0000000002/part-00000.jsonl", func(b []byte) []byte { return b[:len(b)-1] })
			},
			want: []want{{"sink batch-0000000002/part-00000.jsonl", "the manifest says"}},
		},
		{
			name: "sink manifest of a committed batch deleted",
			damage: func(t *testing.T, f *streamFixture) {
				remove(t, f.sinkDir, "_manifests/2")
			},
			want: []want{{"sink _manifests/2", "missing: batch 2 is committed"}},
		},
		{
			name: "metadata is not JSON",
			damage: func(t *testing.T, f *streamFixture) {
				put(t, f.dir, stream.MetadataObject, frame.Encode(frame.KindQueryMeta, 1, []byte(`{"query_id": `)))
			},
			want: []want{{"metadata", "not valid JSON"}},
		},
		{
			name: "offsets entry of another batch",
			damage: func(t *testing.T, f *streamFixture) {
				e := offsetsEntry(t, f.dir, 2)
				e.Batch = 5
				put(t, f.dir, "offsets/2", logEntry(e))
			},
			want: []want{{"offsets/2", "not a valid offsets entry: it is for batch 5"}},
		},
		{
			name: "batch does not start where the one before ended",
			damage: func(t *testing.T, f *streamFixture) {
				e := offsetsEntry(t, f.dir, 1)
				e.End[0]--
				put(t, f.dir, "offsets/1", logEntry(e))
			},
			want: []want{{"offsets/2", "batch 2 starts at source offsets [40 40], but batch 1 ended at [39 40]"}},
		},
		{
			name: "two batches pending",
			damage: func(t *testing.T, f *streamFixture) {
				e := offsetsEntry(t, f.dir, 3)
				next := stream.OffsetsEntry{Batch: 4, Start: e.End, End: e.End, Watermark: e.Watermark}
				put(t, f.dir, "offsets/4", logEntry(next))
			},
			want: []want{{"offsets/4", "more than one batch is pending"}},
		},
		{
			name: "commit entry ahead of the offsets log",
			damage: func(t *testing.T, f *streamFixture) {
				for _, b := range []int64{3, 4} {
					put(t, f.dir, fmt.Sprintf("commits/%d", b), logEntry(stream.CommitEntry{Batch: b, NextWatermark: math.MaxInt64}))
				}
			},
			want: []want{{"commits/4", "batch 4 is committed but the offsets log ends at batch 3: commits never run ahead of offsets"}},
		},
		{
			name: "state store of a partition deleted",
			damage: func(t *testing.T, f *streamFixture) {
				if err := os.RemoveAll(filepath.Join(f.dir, "state/1/1")); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"state store state/1/1", "missing: batch 2 is committed, so operator 1 (WindowAggregate) must have a state store for partition 1"}},
		},
		{
			name: "state versions of committed batches lost",
			damage: func(t *testing.T, f *streamFixture) {
				remove(t, f.dir, "state/1/0/4.delta") // the pending batch's: allowed
				remove(t, f.dir, "state/1/0/3.delta") // batch 2's: committed
			},
			want: []want{{"state store state/1/0", "latest version is 2, but batch 2 is committed, which left version 3"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := buildStreamLocation(t, streamConfig{fileSink: true, pending: 3})
			c.damage(t, f)
			args := []string{"checkpoint", "verify", f.dir, "--sink", f.sinkDir}
			r := cairn(t, args...)
			r.wantExit(t, 1, args...)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			problems := lines[:len(lines)-1]
			for _, w := range c.want {
				found := false
				for _, l := range problems {
					if strings.HasPrefix(l, w.object+": ") && strings.Contains(l, w.says) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line names %s and says %q:\n%s", w.object, w.says, r)
				}
			}
			if len(problems) != len(c.want) {
				t.Errorf("%d problem lines, want %d (one per damaged object):\n%s", len(problems), len(c.want), r)
			}
			summary := lines[len(lines)-1]
			if !strings.HasPrefix(summary, "checked ") || !strings.HasSuffix(summary, ": "+plural(len(c.want), "problem")) {
				t.Errorf("last line %q is not a summary counting %d problems", summary, len(c.want))
			}
		})
	}
}

func TestVerifyStreamClean(t *testing.T) {
	t.Parallel()
	f := buildStreamLocation(t, streamConfig{fileSink: true, pending: 3})
	args := []string{"checkpoint", "verify", f.dir, "--sink", f.sinkDir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	if want := "a streaming query, a file sink of 4 manifests (8 parts, "; !strings.Contains(r.stdout, want) || !strings.HasSuffix(r.stdout, ": 0 problems\n") {
		t.Errorf("verify of a sound query and sink: want only the summary with %q and 0 problems, got\n%s", want, r)
	}
	args = []string{"checkpoint", "verify", f.dir, "--sink", filepath.Join(f.sinkDir, "nope")}
	r = cairn(t, args...)
	r.wantExit(t, 1, args...)
	if !strings.Contains(r.stderr, "no file sink at") {
		t.Errorf("verify with a missing sink does not say so:\n%s", r)
	}
}

// TestCleanStream cleans a crashed query's location whose pending batch
// committed its state, and whose stores have a snapshot of that version:
// keeping one batch must still keep the version the replay starts from.
func TestCleanStream(t *testing.T) {
	t.Parallel()
	f := buildStreamLocation(t, streamConfig{fileSink: true, snapshotAfter: 6, pending: 8, snapshotAtEnd: true})
	before := tree(t, f.dir)
	// Batch 7 is the last committed; 8 is pending and committed version 9
	// of the state. Kept: batch 7 and 8 of the logs, state versions 8 and 9
	// (snapshot 6 and deltas 7 to 9; snapshot 9 alone cannot rebuild 8).
	var want []string
	var wantBytes int64
	for _, log := range []string{"offsets", "commits"} {
		for b := range 7 {
			want = append(want, fmt.Sprintf("%s/%d", log, b))
		}
	}
	for p := range fixturePartition {
		for v := 1; v <= 6; v++ {
			want = append(want, fmt.Sprintf("state/1/%d/%d.delta", p, v))
		}
	}
	for _, name := range want {
		wantBytes += int64(len(before[name]))
	}

	args := []string{"checkpoint", "clean", f.dir, "--retain", "1", "--dry-run"}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	if got := listed(r.stdout, "would delete "); !slices.Equal(got, want) {
		t.Errorf("--dry-run lists\n%q\nwant\n%q\n%s", got, want, r)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("would free %d objects, %d bytes", len(want), wantBytes)) || !strings.Contains(r.stdout, "nothing was deleted") {
		t.Errorf("--dry-run does not sum up %d objects and %d bytes:\n%s", len(want), wantBytes, r)
	}
	if after := tree(t, f.dir); !equalTrees(before, after) {
		t.Fatalf("--dry-run changed the location")
	}

	args = []string{"checkpoint", "clean", f.dir, "--retain", "1"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	for _, w := range []string{"keeping batch 7 and pending batch 8", "state store state/1/0: keeping versions 8 to 9 (pending batch 8 committed state",
		fmt.Sprintf("freed %d objects, %d bytes", len(want), wantBytes)} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("clean does not say %q:\n%s", w, r)
		}
	}
	if got := listed(r.stdout, "deleted "); !slices.Equal(got, want) {
		t.Errorf("clean deleted\n%q\nwant\n%q", got, want)
	}
	after := tree(t, f.dir)
	for name := range before {
		_, there := after[name]
		switch deleted := slices.Contains(want, name); {
		case deleted && there:
			t.Errorf("%s is listed as deleted and is still there", name)
		case !deleted && !there:
			t.Errorf("%s was deleted, and is not one clean lists", name)
		}
	}
	args = []string{"checkpoint", "verify", f.dir, "--sink", f.sinkDir}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	// The query resumes: it replays batch 8 from state version 8, runs to
	// the end, and the sink holds exactly the plain group-by.
	f.resumeAndCheck(t)
}

// TestCleanStateOnlyLocation cleans a location without a query: its
// stores get their maintenance, its logs stay, and the latest version
// still reads the same.
func TestCleanStateOnlyLocation(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t)
	args := []string{"checkpoint", "clean", dir, "--retain", "1"}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	want := []string{"state/0/0/3.snapshot", "state/0/0/4.delta", "state/0/0/5.delta", "state/0/0/6.delta"}
	if got := listed(r.stdout, "deleted "); !slices.Equal(got, want) {
		t.Errorf("clean deleted %q, want %q:\n%s", got, want, r)
	}
	if !strings.Contains(r.stdout, "no streaming query here") {
		t.Errorf("clean does not say it left the logs alone:\n%s", r)
	}
	for _, name := range []string{"offsets/0", "offsets/1", "commits/0"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("clean of a location without a query touched its logs: %v", err)
		}
	}
	args = []string{"state", "read", dir, "--operator", "0", "--partition", "0"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	golden(t, "read-latest.golden", r.stdout)
}

func TestCleanRefusedWhileQueryRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := buildStreamLocation(t, streamConfig{pending: 3})
	q, err := f.start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	args := []string{"checkpoint", "clean", f.dir, "--retain", "1"}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	for _, w := range []string{"refusing to clean " + f.dir, fmt.Sprintf("pid %d ", os.Getpid()), "stop it first"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("clean while a query runs does not say %q:\n%s", w, r)
		}
	}
	if r.stdout != "" {
		t.Errorf("a refused clean printed:\n%s", r)
	}
	// A dry run takes no lease: it lists, and changes nothing.
	args = []string{"checkpoint", "clean", f.dir, "--retain", "1", "--dry-run"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.Contains(r.stdout, "would delete offsets/0 ") {
		t.Errorf("dry run while a query runs:\n%s", r)
	}
	if !equalTrees(withoutLease(before), withoutLease(tree(t, f.dir))) {
		t.Fatal("a refused clean, or a dry run, changed the location")
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	args = []string{"checkpoint", "clean", f.dir, "--retain", "1"}
	r = cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.Contains(r.stdout, "freed 4 objects") { // offsets/0, offsets/1, commits/0, commits/1
		t.Errorf("clean after the query stopped:\n%s", r)
	}
	// The lease clean took is released: the query starts at once.
	q, err = f.start(t, nil)
	if err != nil {
		t.Fatalf("start after clean: %v", err)
	}
	if ran, err := q.RunBatch(ctx); err != nil || !ran {
		t.Fatalf("replay after clean: ran %v, err %v", ran, err)
	}
	q.Close(ctx)
}

// listed returns the object names of the output lines "<verb> NAME (SIZE)".
func listed(out, verb string) []string {
	var names []string
	for l := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(l, verb); ok {
			name, _, _ := strings.Cut(rest, " (")
			names = append(names, name)
		}
	}
	return names
}

// tree returns the files under dir, by slash-separated name, with their
// contents.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalTrees(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// withoutLease drops the lease objects, which a running query rewrites.
func withoutLease(files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		if !strings.HasPrefix(k, metalog.LeasePrefix+"/") {
			out[k] = v
		}
	}
	return out
}

// remove deletes a file of a location.
func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
		t.Fatal(err)
	}
}
