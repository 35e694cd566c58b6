package pipeline

import (
	"context"
	"errors"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/cairn-data/cairn/storage"
)

var updateRecords = flag.Bool("update-records", false, "rewrite testdata/record-v2.bin")

var sampleRecord = pipelineRecord{Pipeline: "etl", Created: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}

// Records of every format version stay readable: format 1 (no identity,
// written by builds before identities) and format 2.
func TestRecordFormatSamples(t *testing.T) {
	ctx := context.Background()
	if *updateRecords {
		s := storage.NewMem()
		if err := putRecord(ctx, s, pipelineObject, sampleRecord, true); err != nil {
			t.Fatal(err)
		}
		data, _ := storage.GetBytes(ctx, s, pipelineObject)
		if err := os.WriteFile("testdata/record-v2.bin", data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range []string{"testdata/record-v1.bin", "testdata/record-v2.bin"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		s := storage.NewMem()
		storage.PutBytes(ctx, s, pipelineObject, data, storage.PutOptions{})
		var got pipelineRecord
		if err := getRecord(ctx, s, pipelineObject, &got); err != nil || !got.Created.Equal(sampleRecord.Created) || got.Pipeline != sampleRecord.Pipeline {
			t.Errorf("%s reads as %+v, %v; want %+v", file, got, err, sampleRecord)
		}
	}
}

// A record copied over another (one run's _run record over another's) is
// refused, naming it.
func TestCopiedRecordIsRefused(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	for _, id := range []string{"000001", "000002"} {
		if err := putRecord(ctx, s, runRecordObject(id, publishedObject), sampleRecord, true); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := storage.GetBytes(ctx, s, runRecordObject("000001", publishedObject))
	storage.PutBytes(ctx, s, runRecordObject("000002", publishedObject), data, storage.PutOptions{})
	var got pipelineRecord
	err := getRecord(ctx, s, runRecordObject("000002", publishedObject), &got)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != runRecordObject("000002", publishedObject) {
		t.Fatalf("err = %v, want a CorruptError naming %s", err, runRecordObject("000002", publishedObject))
	}
}
