package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

// Tests reach a fault-injecting storage through a URL scheme of their
// own, since the sinks take a location string: faultytest://name opens the
// storage registered under name, and closing it does not close the
// storage (the test reads it afterwards).
var (
	ioFaultyOnce sync.Once
	ioFaultyMu   sync.Mutex
	ioFaultyByID = map[string]storage.Storage{}
	ioFaultySeq  atomic.Int64
)

type ioNoClose struct{ storage.Storage }

func (ioNoClose) Close() error { return nil }

// ioFaultyLocation returns a location URL that opens st.
func ioFaultyLocation(st storage.Storage) string {
	ioFaultyOnce.Do(func() {
		storage.Register("faultytest", func(ctx context.Context, u *url.URL) (storage.Storage, error) {
			ioFaultyMu.Lock()
			defer ioFaultyMu.Unlock()
			st, ok := ioFaultyByID[u.Host]
			if !ok {
				return nil, fmt.Errorf("no test storage %q", u.Host)
			}
			return ioNoClose{st}, nil
		})
	})
	id := fmt.Sprint("s", ioFaultySeq.Add(1))
	ioFaultyMu.Lock()
	ioFaultyByID[id] = st
	ioFaultyMu.Unlock()
	return "faultytest://" + id
}

// ioOutput is what a sink left in storage.
type ioOutput struct {
	success bool
	parts   []string // part object names, sorted
}

func ioReadOutput(t *testing.T, st storage.Storage) ioOutput {
	t.Helper()
	objs, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out ioOutput
	for _, o := range objs {
		switch {
		case o.Name == SuccessObject:
			out.success = true
			if o.Size != 0 {
				t.Fatalf("_SUCCESS has %d bytes", o.Size)
			}
		case strings.HasPrefix(o.Name, "part-"):
			out.parts = append(out.parts, o.Name)
		default:
			t.Fatalf("unexpected object %s", o.Name)
		}
	}
	return out
}

// ioReadParts decodes every part object, in name order.
func ioReadParts(t *testing.T, st storage.Storage, parts []string) []ioRec {
	t.Helper()
	var out []ioRec
	for _, name := range parts {
		data, err := storage.GetBytes(context.Background(), st, name)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, ".jsonl"):
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				var r ioRec
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				out = append(out, r)
			}
		case strings.HasSuffix(name, ".parquet"):
			r := parquet.NewGenericReader[ioRec](bytes.NewReader(data))
			recs := make([]ioRec, r.NumRows())
			if n, err := r.Read(recs); n != len(recs) || (err != nil && err != io.EOF) {
				t.Fatalf("%s: read %d of %d rows: %v", name, n, len(recs), err)
			}
			r.Close()
			out = append(out, recs...)
		default:
			t.Fatalf("unexpected part %s", name)
		}
	}
	return out
}

type ioSink struct {
	name  string
	ext   string
	write func(d *Dataset[ioRec], ctx context.Context, loc string, opts WriteOptions) (WriteReport, error)
}

var ioSinks = []ioSink{
	{"jsonl", ".jsonl", (*Dataset[ioRec]).WriteJSONL},
	{"parquet", ".parquet", (*Dataset[ioRec]).WriteParquet},
}

func ioPartNames(ext string, n int) []string {
	var out []string
	for p := range n {
		out = append(out, fmt.Sprintf("part-%05d%s", p, ext))
	}
	return out
}

// TestWriteFaultAtEveryWrite fails the k-th storage write for every k, over
// an empty location and over a complete older output being overwritten,
// and checks that _SUCCESS exists exactly when the output is whole: the
// new records, or (a fault before anything was removed) the old ones.
func TestWriteFaultAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 2)
	oldRecs, newRecs := ioRecs(400), ioRecs(1000)[500:]
	for _, sink := range ioSinks {
		for _, overwrite := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/overwrite=%v", sink.name, overwrite), func(t *testing.T) {
				succeeded := false
				for k := 1; k <= 40 && !succeeded; k++ {
					mem := storage.NewMem()
					if overwrite {
						if _, err := sink.write(FromSlice(s, oldRecs, 4), ctx, ioFaultyLocation(mem), WriteOptions{}); err != nil {
							t.Fatal(err)
						}
					}
					f := faulty.New(mem)
					f.FailAt(k, faulty.Writes)
					rep, err := sink.write(FromSlice(s, newRecs, 3), ctx, ioFaultyLocation(f), WriteOptions{Overwrite: overwrite})
					out := ioReadOutput(t, mem)
					if err != nil {
						if !errors.Is(err, faulty.ErrInjected) {
							t.Fatalf("k=%d: err = %v, want the injected fault", k, err)
						}
						if out.success {
							// Only a fault at the very first write (the delete of
							// the old _SUCCESS) may leave a complete output: the old.
							if !overwrite || k != 1 || !slices.Equal(out.parts, ioPartNames(sink.ext, 4)) {
								t.Fatalf("k=%d: write failed (%v) but _SUCCESS exists beside %v", k, err, out.parts)
							}
							equalIORecs(t, ioReadParts(t, mem, out.parts), oldRecs)
						}
						continue
					}
					succeeded = true
					if !out.success || !slices.Equal(out.parts, ioPartNames(sink.ext, 3)) {
						t.Fatalf("k=%d: write succeeded but left %+v", k, out)
					}
					equalIORecs(t, ioReadParts(t, mem, out.parts), newRecs)
					if rep.Files != 3 || rep.Records != int64(len(newRecs)) {
						t.Fatalf("WriteReport = %+v", rep)
					}
					// The fault must have had no write left to hit: every k
					// below this one failed the write.
					wantWrites := 3 + 1 // parts, _SUCCESS
					if overwrite {
						wantWrites += 1 + 4 // delete _SUCCESS, delete old parts
					}
					if k != wantWrites+1 {
						t.Fatalf("first success at k=%d, want %d (one write per part, _SUCCESS, deletes)", k, wantWrites+1)
					}
				}
				if !succeeded {
					t.Fatal("no run succeeded")
				}
			})
		}
	}
}

func TestWriteRefusesACompleteOutputUnlessOverwrite(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 2)
	for _, sink := range ioSinks {
		t.Run(sink.name, func(t *testing.T) {
			mem := storage.NewMem()
			loc := ioFaultyLocation(mem)
			first := ioRecs(100)
			if _, err := sink.write(FromSlice(s, first, 5), ctx, loc, WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := sink.write(FromSlice(s, ioRecs(10), 2), ctx, loc, WriteOptions{})
			if err == nil || !strings.Contains(err.Error(), "_SUCCESS") || !strings.Contains(err.Error(), "Overwrite") {
				t.Fatalf("second write: err = %v, want a refusal naming _SUCCESS", err)
			}
			if out := ioReadOutput(t, mem); !out.success || len(out.parts) != 5 {
				t.Fatalf("refused write changed the output: %+v", out)
			}
			equalIORecs(t, ioReadParts(t, mem, ioReadOutput(t, mem).parts), first)

			second := ioRecs(30)[10:]
			rep, err := sink.write(FromSlice(s, second, 2), ctx, loc, WriteOptions{Overwrite: true})
			if err != nil {
				t.Fatal(err)
			}
			out := ioReadOutput(t, mem)
			if !out.success || !slices.Equal(out.parts, ioPartNames(sink.ext, 2)) {
				t.Fatalf("after overwrite: %+v (old parts must be gone)", out)
			}
			equalIORecs(t, ioReadParts(t, mem, out.parts), second)
			objs, _ := mem.List(ctx, "part-")
			var bytes int64
			for _, o := range objs {
				bytes += o.Size
			}
			if rep != (WriteReport{Files: 2, Records: 20, Bytes: bytes}) {
				t.Fatalf("WriteReport = %+v, want 2 files, 20 records, %d bytes", rep, bytes)
			}
		})
	}
}

func TestWriteReplacesPartsOfAFailedWrite(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 2)
	mem := storage.NewMem()
	// A failed earlier write with more partitions left parts behind.
	for _, name := range []string{"part-00000.jsonl", "part-00007.jsonl", "part-00003.parquet"} {
		if err := storage.PutBytes(ctx, mem, name, []byte(`{"name":"stale"}`+"\n"), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := ioRecs(10)
	if _, err := FromSlice(s, want, 2).WriteJSONL(ctx, ioFaultyLocation(mem), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out := ioReadOutput(t, mem)
	if !slices.Equal(out.parts, ioPartNames(".jsonl", 2)) {
		t.Fatalf("parts = %v; stale parts must not outlive a new write", out.parts)
	}
	equalIORecs(t, ioReadParts(t, mem, out.parts), want)
}

func TestWriteCancelled(t *testing.T) {
	s := ioSession(t, nil, 2)
	for _, sink := range ioSinks {
		for _, where := range []string{"mem", "local"} {
			t.Run(sink.name+"/"+where, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var n atomic.Int64
				d := Map(FromSlice(s, ioRecs(50_000), 4), func(r ioRec) ioRec {
					if n.Add(1) == 5000 {
						cancel()
					}
					return r
				})
				var st storage.Storage = storage.NewMem()
				loc := ioFaultyLocation(st)
				if where == "local" {
					loc = t.TempDir()
					var err error
					if st, err = storage.OpenLocal(loc); err != nil {
						t.Fatal(err)
					}
				}
				_, err := sink.write(d, ctx, loc, WriteOptions{})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
				if out := ioReadOutput(t, st); out.success {
					t.Fatalf("cancelled write left _SUCCESS: %+v", out)
				}
			})
		}
	}
}

func TestWriteParquetNeedsAStruct(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 1)
	mem := storage.NewMem()
	loc := ioFaultyLocation(mem)
	if _, err := FromSlice(s, []int{1, 2}, 1).WriteParquet(ctx, loc, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "struct") {
		t.Fatalf("WriteParquet of ints: err = %v", err)
	}
	type hidden struct{ a, b int }
	if _, err := FromSlice(s, []hidden{{1, 2}}, 1).WriteParquet(ctx, loc, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "exported") {
		t.Fatalf("WriteParquet of a struct without exported fields: err = %v", err)
	}
	if _, err := FromSlice(s, ioRecs(1), 1).WriteParquet(ctx, loc, WriteOptions{Compression: "gzip"}); err == nil || !strings.Contains(err.Error(), "Compression") {
		t.Fatalf("unknown codec: err = %v", err)
	}
	if _, err := FromSlice(s, ioRecs(1), 1).WriteJSONL(ctx, loc, WriteOptions{Compression: "zstd"}); err == nil || !strings.Contains(err.Error(), "Compression") {
		t.Fatalf("JSONL with a codec: err = %v", err)
	}
	if objs, _ := mem.List(ctx, ""); len(objs) != 0 {
		t.Fatalf("refused writes wrote %v", objs)
	}
}

func TestWriteFailureOfAPartitionNamesIt(t *testing.T) {
	ctx := context.Background()
	s := ioSession(t, nil, 1)
	mem := storage.NewMem()
	bad := MapErr(FromSlice(s, ioRecs(10), 2), func(r ioRec) (ioRec, error) {
		if r.Name == "rec-0007" {
			return r, errors.New("boom")
		}
		return r, nil
	})
	_, err := bad.WriteParquet(ctx, ioFaultyLocation(mem), WriteOptions{})
	var pe *PartitionError
	if !errors.As(err, &pe) || pe.Partition != 1 || pe.Op != "Map" || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want partition 1 of Map failing with boom", err)
	}
	if out := ioReadOutput(t, mem); out.success || slices.Contains(out.parts, "part-00001.parquet") {
		t.Fatalf("failed write left %+v", out)
	}
	// A storage failure names the object and the location.
	f := faulty.New(storage.NewMem())
	f.FailAt(2, func(op faulty.Op) bool { return op.Kind == faulty.Put })
	_, err = FromSlice(s, ioRecs(10), 2).WriteJSONL(ctx, ioFaultyLocation(f), WriteOptions{})
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), fmt.Sprintf("write part-%05d.jsonl to mem://: ", pe.Partition)) || !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("err = %v, want the failed object named", err)
	}
}
