package metalog

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

var update = flag.Bool("update", false, "rewrite the golden samples in testdata/")

// sampleLease is the record held by testdata/lease-v1.bin.
var sampleLease = leaseRecord{
	Token: "9f86d081884c7d659a2feaa0c55ad015", Owner: "query clicks", Host: "worker-1",
	BootID: "6f1c2e2a-5d7b-4c1e-9b1a-0d2f3e4a5b6c", PIDNS: "pid:[4026531836]", PID: 4242, Start: 1234567,
	Acquired: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Expires: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC),
}

var sampleEntry = []byte(`{"batchWatermarkMs":0,"offsets":{"clicks":{"0":4200}}}`)

// golden compares got with a checked-in sample, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -args -update to create it)", err, t.Name())
	}
	return want
}

// Samples of every format version must stay readable by every later build
// (DESIGN.md, "Compatibility of durable formats"). If the encoder changes,
// add a format version and keep these samples.
func TestFormatSamples(t *testing.T) {
	enc, err := encodeLease(sampleLease)
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "lease-v1.bin", enc)
	if !bytes.Equal(enc, want) {
		t.Errorf("the lease encoding changed from testdata/lease-v1.bin: add a format version instead")
	}
	got, err := decodeLease("_lease/1", want)
	if err != nil || normalized(got) != sampleLease {
		t.Errorf("testdata/lease-v1.bin decodes to %+v, %v; want %+v", got, err, sampleLease)
	}

	// Log entries: format 1 (no identity), written by builds before
	// identities, and format 2, written now.
	ctx := context.Background()
	s := storage.NewMem()
	l := mustOpen(t, s, "offsets")
	if err := l.Add(ctx, 41, sampleEntry); err != nil {
		t.Fatal(err)
	}
	written, err := storage.GetBytes(ctx, s, "offsets/41")
	if err != nil {
		t.Fatal(err)
	}
	for _, sample := range []struct {
		file string
		enc  []byte
	}{
		{"entry-v1.bin", frame.Encode(frame.KindLogEntry, 1, sampleEntry)},
		{"entry-v2.bin", written},
	} {
		want = golden(t, sample.file, sample.enc)
		if !bytes.Equal(sample.enc, want) {
			t.Errorf("the log entry encoding changed from testdata/%s: add a format version instead", sample.file)
		}
		s := storage.NewMem()
		if err := storage.PutBytes(ctx, s, "offsets/41", want, storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, s, "offsets")
		if p, err := l.Get(ctx, 41); err != nil || !bytes.Equal(p, sampleEntry) {
			t.Errorf("testdata/%s reads as %q, %v", sample.file, p, err)
		}
	}
}

// An entry copied over another, in the same log or from another one (the
// offsets of batch 24 over batch 25's; a file source's log entry over
// another), is whole but is not what its name says: Get refuses it, naming
// it, instead of returning the other entry's payload.
func TestCopiedEntryIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ log, src, dst string }{
		{"offsets", "offsets/24", "offsets/25"},
		{"sources/0/files", "sources/0/files/6", "sources/0/files/7"},
		{"commits", "offsets/25", "commits/25"},
	} {
		t.Run(tc.src+" over "+tc.dst, func(t *testing.T) {
			s := storage.NewMem()
			for _, prefix := range []string{"offsets", "commits", "sources/0/files"} {
				l := mustOpen(t, s, prefix)
				for id := int64(0); id <= 25; id++ {
					if err := l.Add(ctx, id, fmt.Appendf(nil, "%s entry %d", prefix, id)); err != nil {
						t.Fatal(err)
					}
				}
			}
			data, err := storage.GetBytes(ctx, s, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if err := storage.PutBytes(ctx, s, tc.dst, data, storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			l := mustOpen(t, s, tc.log)
			id, _ := parseID(tc.dst[strings.LastIndexByte(tc.dst, '/')+1:])
			p, err := l.Get(ctx, id)
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != tc.dst {
				t.Fatalf("Get(%d) = %q, %v; want a CorruptError naming %s", id, p, err, tc.dst)
			}
			if !strings.Contains(err.Error(), tc.src) {
				t.Errorf("error %q does not say the object holds %s", err, tc.src)
			}
		})
	}
}
