package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

// identityRun runs the file-source-to-file-sink query of in over the
// checkpoint location st until idle.
func identityRun(ctx context.Context, t *testing.T, in, out string, st storage.Storage) error {
	t.Helper()
	src, err := NewFileSource[fileEvent](in, FileSourceOptions{Format: "jsonl", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewFileSink[dataset.Pair[string, int64]](out, FileSinkOptions{Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	q, err := Start(ctx, src, fileSums, sink, fsQueryOptions(st))
	if err != nil {
		return err
	}
	defer q.Close(ctx)
	return q.Run(ctx)
}

// An object of a checkpoint location copied over another, as a mistaken
// restore or a hand-made repair would, is whole: its checksums hold. A
// restart must refuse it, naming it, rather than resume from the wrong
// state or the wrong input (the issue saw 40 extra and 28 missing rows, and
// exit 0): a state delta over the next one, a delta of partition 1 into
// partition 0, an entry of the file source's log over another, an offsets
// entry over the next one.
func TestRestartRefusesCopiedObjects(t *testing.T) {
	ctx := context.Background()
	in, out := t.TempDir(), t.TempDir()
	built := storage.NewMem()
	fsClickFiles(t, in, "b", 3, 6)
	if err := identityRun(ctx, t, in, out, built); err != nil {
		t.Fatal(err)
	}
	objs, err := built.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	// The stores of the aggregation's two partitions, and their deltas in
	// version order.
	var deltas [2][]string
	for p := range 2 {
		var vs []int64
		dir := ""
		for _, n := range names {
			d, base := n[:max(strings.LastIndexByte(n, '/'), 0)], n[strings.LastIndexByte(n, '/')+1:]
			if v, kind, ok := memstate.ParseFileName(base); ok && kind == "delta" && strings.HasPrefix(d, "state/") && strings.HasSuffix(d, fmt.Sprintf("/%d", p)) {
				vs, dir = append(vs, v), d
			}
		}
		slices.Sort(vs)
		for _, v := range vs {
			deltas[p] = append(deltas[p], memstate.DeltaName(dir, v))
		}
		if len(deltas[p]) < 2 {
			t.Fatalf("partition %d has deltas %v, want two or more (objects: %v)", p, deltas[p], names)
		}
	}
	latest := func(p int) string { return deltas[p][len(deltas[p])-1] }
	previous := func(p int) string { return deltas[p][len(deltas[p])-2] }
	fsClickFiles(t, in, "c", 4, 2) // new input: a restart runs batches that load the state
	lastOffsets := fmt.Sprintf("%s/%d", OffsetsLog, countPrefix(names, OffsetsLog+"/")-1)
	prevOffsets := fmt.Sprintf("%s/%d", OffsetsLog, countPrefix(names, OffsetsLog+"/")-2)

	for _, tc := range []struct{ name, src, dst string }{
		{"state delta over the next", previous(0), latest(0)},
		{"partition 1's delta into partition 0", strings.Replace(latest(0), "/0/", "/1/", 1), latest(0)},
		{"file source entry over another", "sources/0/files/0", "sources/0/files/1"},
		{"offsets entry over the next", prevOffsets, lastOffsets},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storage.NewMem()
			for _, n := range names {
				data, err := storage.GetBytes(ctx, built, n)
				if err != nil {
					t.Fatal(err)
				}
				if n == tc.dst {
					if data, err = storage.GetBytes(ctx, built, tc.src); err != nil {
						t.Fatal(err)
					}
				}
				storage.PutBytes(ctx, st, n, data, storage.PutOptions{})
			}
			err := identityRun(ctx, t, in, out, st)
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != tc.dst {
				t.Fatalf("restart with %s copied over %s: err = %v, want a CorruptError naming %s", tc.src, tc.dst, err, tc.dst)
			}
			if !strings.Contains(err.Error(), "not what its name says") {
				t.Fatalf("error %q does not say the object is misplaced", err)
			}
		})
	}
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}
