package pebblestate_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/state/pebblestate"
	"github.com/cairn-data/cairn/state/statetest"
	"github.com/cairn-data/cairn/storage"
)

// machines maps a location to the working directory of "the machine" that
// uses it, so that a reopened provider finds its local database again.
var machines = struct {
	sync.Mutex
	dirs map[storage.Storage]string
}{dirs: map[storage.Storage]string{}}

// testOptions are small memory settings for tests, in dir.
func testOptions(dir string) pebblestate.Options {
	return pebblestate.Options{Dir: dir, BlockCacheSize: 8 << 20, MemTableSize: 1 << 20}
}

var harness = statetest.Harness{
	Name:         pebblestate.Name,
	DeltaName:    pebblestate.ChangelogName,
	SnapshotName: pebblestate.CheckpointName,
	Backends:     map[string]func(t *testing.T) func(k int) storage.Storage{"s3": s3Backend},
	Verify:       pebblestate.VerifyObject,
	Options: func(t testing.TB, s storage.Storage, fresh bool) any {
		if fresh {
			return testOptions(t.TempDir())
		}
		machines.Lock()
		defer machines.Unlock()
		dir, ok := machines.dirs[s]
		if !ok {
			dir = t.TempDir()
			machines.dirs[s] = dir
		}
		return testOptions(dir)
	},
}

func TestMain(m *testing.M) { statetest.Main(m, harness) }

// TestSuite runs the provider-independent state store tests.
func TestSuite(t *testing.T) {
	h := harness
	if raceEnabled || testing.Short() {
		h.CrashStride = 4
	}
	statetest.Run(t, h)
}

// s3Backend runs the crash test on a real S3-compatible server (MinIO):
// a bucket for the subtest, a prefix per crash point.
func s3Backend(t *testing.T) func(k int) storage.Storage {
	open := s3test.Bucket(t)
	return func(k int) storage.Storage { return open(fmt.Sprintf("k%d", k)) }
}
