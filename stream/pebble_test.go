package stream

import (
	"maps"
	"testing"

	"github.com/cairn-data/cairn/internal/s3test"
	_ "github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/storage"
)

// The aggregation crash test with the pebble state provider: a crash at
// every storage operation, restarted on what survived (its local Pebble
// databases, never ahead of the changelogs), gives the sink of a run
// without faults.
func TestQueryCrashAtEveryOperationPebble(t *testing.T) {
	src := NewMemorySource[click]("clicks", 3)
	want := clicks(11, src, 200)
	pebbleOptions := func(st storage.Storage) Options {
		o := testOptions(st)
		o.StateProvider = "pebble"
		return o
	}
	clean := crashEveryOperation(t, src, sumPerUser, pebbleOptions, 60, bothLandings)
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

// The same on MinIO, with pebble state.
func TestQueryCrashAtEveryOperationPebbleS3(t *testing.T) {
	open := s3test.Bucket(t)
	src := NewMemorySource[click]("clicks", 3)
	want := clicks(11, src, 200)
	pebbleOptions := func(st storage.Storage) Options {
		o := testOptions(st)
		o.StateProvider = "pebble"
		return o
	}
	clean := crashEveryOperation(t, src, sumPerUser, pebbleOptions, 12, oneLanding,
		func(label string) storage.Storage { return open("pebble-" + label) })
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
