package metalog

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
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

// Samples of format version 1 must stay readable by every later build
// (DESIGN.md, "Compatibility of durable formats"). If the encoder changes,
// add a format version and keep these samples.
func TestFormatV1Samples(t *testing.T) {
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

	enc = frame.Encode(frame.KindLogEntry, entryVersion, sampleEntry)
	want = golden(t, "entry-v1.bin", enc)
	if !bytes.Equal(enc, want) {
		t.Errorf("the log entry encoding changed from testdata/entry-v1.bin: add a format version instead")
	}
	ctx := context.Background()
	s := storage.NewMem()
	if err := storage.PutBytes(ctx, s, "offsets/41", want, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, s, "offsets")
	if p, err := l.Get(ctx, 41); err != nil || !bytes.Equal(p, sampleEntry) {
		t.Errorf("testdata/entry-v1.bin reads as %q, %v", p, err)
	}
}
