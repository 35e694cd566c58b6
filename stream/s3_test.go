package stream

import (
	"maps"
	"testing"

	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/internal/s3test/miniotest"
	"github.com/cairn-data/cairn/storage"
)

func TestMain(m *testing.M) { miniotest.Main(m) }

// The crash tests of the aggregation and window queries, on a real
// S3-compatible server (MinIO): a crash at a sample of the storage
// operations (every request is a round trip), each restarted on what
// survived, must give the sink of a run without faults, batch by batch.
func TestQueryCrashAtEveryOperationS3(t *testing.T) {
	open := s3test.Bucket(t)
	src := NewMemorySource[click]("clicks", 3)
	want := clicks(11, src, 200)
	clean := crashEveryOperation(t, src, sumPerUser, testOptions, 100, oneLanding,
		func(label string) storage.Storage { return open(label) })
	got := map[string]int64{}
	for _, id := range sortedKeys(clean) {
		for _, kv := range clean[id] {
			got[kv.Key] = kv.Value
		}
	}
	if !maps.Equal(got, want) {
		t.Fatal("the run without faults differs from the plain sum")
	}
}

func TestWindowQueryCrashAtEveryOperationS3(t *testing.T) {
	open := s3test.Bucket(t)
	src := NewMemorySource[event]("events", 2)
	want := events(9, src, 900)
	clean := crashEveryOperation(t, src, perUserMinute, windowOptions, 100, oneLanding,
		func(label string) storage.Storage { return open(label) })
	var rows []Windowed[string, totals]
	for _, id := range sortedKeys(clean) {
		rows = append(rows, clean[id]...)
	}
	if got := collectWindows(t, rows); !maps.Equal(got, want) {
		t.Fatal("the run without faults differs from the plain group-by")
	}
}

func TestFileSourceToFileSinkCrashAtEveryOperationS3(t *testing.T) {
	open := s3test.Bucket(t)
	fileSourceToSinkCrash(t, func(label string) storage.Storage { return open(label) }, 12, []bool{true})
}
