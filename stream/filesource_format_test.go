package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

var updateSamples = flag.Bool("update-filesource", false, "rewrite the file source's checked-in samples under testdata/")

// sampleCompaction is the compaction held by testdata/files-compact-v1.bin.
func sampleCompaction() fileCompaction {
	crc := uint32(0x1c291ca3)
	var entries []fileEntry
	for i, name := range []string{"a.jsonl", "b.jsonl", "c.jsonl"} {
		e := fileEntry{Name: name, Size: int64(100 + i), ModTime: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Partitions: 2}
		if i > 0 { // entry 0 was logged before cairn recorded CRCs
			e.CRC32C = &crc
		}
		entries = append(entries, e)
	}
	return fileCompaction{Format: 1, Object: "sources/0/files-compact/4", Log: "sources/0/files", First: 0, End: 3, Entries: entries}
}

// The compaction format (version 1) must stay readable by every later
// build: if the encoding changes, add a format and keep this sample.
func TestFileCompactionFormatV1Sample(t *testing.T) {
	ctx := context.Background()
	payload, _ := json.Marshal(sampleCompaction())
	enc := frame.Encode(frame.KindLogEntry, 1, payload)
	path := filepath.Join("testdata", "files-compact-v1.bin")
	if *updateSamples {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -args -update-filesource to create it)", err, t.Name())
	}
	if !bytes.Equal(enc, want) {
		t.Errorf("the compaction encoding changed from %s: add a format version instead", path)
	}
	st := storage.NewMem()
	if err := storage.PutBytes(ctx, st, "sources/0/files-compact/4", want, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	log, err := loadFileLog(ctx, st, "sources/0")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range log.entries {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{"a.jsonl", "b.jsonl", "c.jsonl"}) || log.compactedTo != 3 || log.entries[0].CRC32C != nil ||
		*log.entries[2].CRC32C != 0x1c291ca3 {
		t.Fatalf("sample decodes to %+v", log.entries)
	}
	// The same bytes under another name are refused.
	st = storage.NewMem()
	storage.PutBytes(ctx, st, "sources/0/files-compact/5", want, storage.PutOptions{})
	if _, err := loadFileLog(ctx, st, "sources/0"); err == nil {
		t.Fatal("a compaction under another name was accepted")
	}
}

func FuzzDecodeCompaction(f *testing.F) {
	good, _ := json.Marshal(sampleCompaction())
	f.Add(good)
	f.Add([]byte(`{"format":1,"object":"sources/0/files-compact/4","log":"sources/0/files","first":0,"end":1,"entries":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCompaction("sources/0/files-compact/4", "sources/0/files", data)
		if err != nil {
			return
		}
		if int64(len(c.Entries)) != c.End-c.First || c.First < 0 {
			t.Fatalf("accepted a compaction whose entries do not match its range: %+v", c)
		}
		for _, e := range c.Entries {
			if !e.valid() {
				t.Fatalf("accepted an invalid entry %+v", e)
			}
		}
	})
}
