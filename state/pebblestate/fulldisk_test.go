package pebblestate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// budgetFS is a file system that holds budget bytes: a write beyond them
// writes what fits and fails with ENOSPC, as a full disk does. Setting the
// budget to math.MaxInt64 gives the space back.
type budgetFS struct {
	vfs.FS
	budget  atomic.Int64
	written atomic.Int64
	enospc  atomic.Int64 // failed writes
	// manifest, when set, fails every write to a MANIFEST file halfway,
	// whatever the budget: Pebble cannot go on after that.
	manifest atomic.Bool
}

func newBudgetFS(budget int64) *budgetFS {
	fs := &budgetFS{FS: vfs.Default}
	fs.budget.Store(budget)
	return fs
}

func (fs *budgetFS) take(name string, n int) (int, error) {
	if fs.manifest.Load() && strings.HasPrefix(fs.PathBase(name), "MANIFEST") {
		fs.enospc.Add(1)
		return n / 2, &os.PathError{Op: "write", Path: name, Err: syscall.ENOSPC}
	}
	for {
		left := fs.budget.Load()
		if left == math.MaxInt64 {
			fs.written.Add(int64(n))
			return n, nil
		}
		got := min(int64(n), left)
		if fs.budget.CompareAndSwap(left, left-got) {
			fs.written.Add(got)
			if got < int64(n) {
				fs.enospc.Add(1)
				return int(got), &os.PathError{Op: "write", Path: name, Err: syscall.ENOSPC}
			}
			return n, nil
		}
	}
}

func (fs *budgetFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(f, name, err)
}

func (fs *budgetFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(f, name, err)
}

func (fs *budgetFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(f, newname, err)
}

func (fs *budgetFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &budgetFile{File: f, fs: fs, name: name}, nil
}

type budgetFile struct {
	vfs.File
	fs   *budgetFS
	name string
}

func (f *budgetFile) Write(p []byte) (int, error) {
	n, err := f.fs.take(f.name, len(p))
	if m, werr := f.File.Write(p[:n]); werr != nil {
		return m, werr
	}
	return n, err
}

func (f *budgetFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.fs.take(f.name, len(p))
	if m, werr := f.File.WriteAt(p[:n], off); werr != nil {
		return m, werr
	}
	return n, err
}

// countingHandler counts the records at warn level and above.
type countingHandler struct {
	mu    sync.Mutex
	lines []string
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) has(prefix string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (h *countingHandler) pebbleLines() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.lines {
		if strings.HasPrefix(l, "pebble:") {
			n++
		}
	}
	return n
}

var fullDiskID = state.StoreID{Operator: 0, Partition: 1}

// fullDiskRun is one run of the full-disk workload.
type fullDiskRun struct {
	t       *testing.T
	s       storage.Storage
	dir     string
	fs      *budgetFS
	log     *countingHandler
	oracles []map[string][]byte // contents of each version, from version 0
	rng     *rand.Rand
}

func (r *fullDiskRun) open() state.Provider {
	r.t.Helper()
	p, err := state.Open(context.Background(), Name, r.s, fullDiskID, state.Schema{Key: "string", Value: "bytes"}, state.Options{
		SnapshotInterval:    3,
		MaintenanceInterval: -1,
		Logger:              slog.New(r.log),
		Provider:            Options{Dir: r.dir, MemTableSize: 256 << 10, testFS: r.fs},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// within runs f and fails the test if it takes longer than d: a call
// blocked on a full disk is the bug this file tests.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v on a full disk", what, d)
	}
}

// commit commits version v+1 with random puts and deletes, recording its
// contents in the oracle before the commit (a failed commit may still
// have made the version durable).
func (r *fullDiskRun) commit(p state.Provider, v int64) error {
	next := maps.Clone(r.oracles[v])
	r.oracles = append(r.oracles[:v+1], next)
	st, err := p.GetStore(context.Background(), v)
	if err != nil {
		return err
	}
	for range 200 {
		k := fmt.Sprintf("k%04d", r.rng.IntN(3000))
		if r.rng.IntN(5) == 0 {
			delete(next, k)
			if err := st.Delete([]byte(k)); err != nil {
				st.Abort()
				return err
			}
			continue
		}
		val := make([]byte, 300)
		for i := range val {
			val[i] = byte(r.rng.IntN(256))
		}
		next[k] = val
		if err := st.Put([]byte(k), val); err != nil {
			st.Abort()
			return err
		}
	}
	_, err = st.Commit(context.Background())
	return err
}

// check compares version v of p with the oracle.
func (r *fullDiskRun) check(p state.Provider, v int64) {
	r.t.Helper()
	rs, err := p.GetReadStore(context.Background(), v)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rs.Abort()
	got := map[string][]byte{}
	for kv, err := range rs.Range(nil, nil) {
		if err != nil {
			r.t.Fatal(err)
		}
		got[string(kv.Key)] = bytes.Clone(kv.Value) // valid until the next key
	}
	if !maps.EqualFunc(got, r.oracles[v], func(a, b []byte) bool { return string(a) == string(b) }) {
		r.t.Fatalf("version %d has %d keys, want %d (the oracle's), or other values", v, len(got), len(r.oracles[v]))
	}
}

// TestFullDiskFailsCleanlyAndResumes fills the disk of the local working
// directory at a range of points (during flushes, MANIFEST writes, local
// checkpoints, opens): a call returns, within a bound and without a panic,
// an error matching syscall.ENOSPC that names the directory; every later
// call returns it at once; Close returns promptly; Pebble's retries are
// rate-limited in the log; and once space is back a new provider on the
// same working directory and checkpoint storage has every committed
// version, the oracle's contents, and commits on.
func TestFullDiskFailsCleanlyAndResumes(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("CAIRN_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (replay with CAIRN_SEED=%d)", seed, seed)

	// A run with room to spare: how many bytes the workload writes.
	const versions = 12
	probe := newBudgetFS(math.MaxInt64)
	pr := &fullDiskRun{t: t, s: storage.NewMem(), dir: t.TempDir(), fs: probe, log: &countingHandler{},
		oracles: []map[string][]byte{{}}, rng: rand.New(rand.NewPCG(seed, 0))}
	p := pr.open()
	for v := range int64(versions) {
		if err := pr.commit(p, v); err != nil {
			t.Fatal(err)
		}
		if err := p.Maintain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	total := probe.written.Load()
	t.Logf("the workload writes %d bytes locally", total)

	// The disk fills after budget bytes, at points spread over the run,
	// with maintenance (a flush and a local checkpoint) after every commit
	// or only Pebble's own flushes; or every MANIFEST write fails from
	// version manifestAt on (Pebble calls Logger.Fatalf).
	type point struct {
		budget     int64
		maintain   bool
		manifestAt int64
	}
	var cases []point
	n := 10
	if testing.Short() {
		n = 4
	}
	for i := range n {
		cases = append(cases, point{budget: total * int64(i) / int64(n), maintain: i%2 == 0, manifestAt: -1})
	}
	for _, at := range []int64{1, 4} {
		cases = append(cases, point{budget: math.MaxInt64, maintain: true, manifestAt: at}, point{budget: math.MaxInt64, manifestAt: at})
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("budget=%d,maintain=%v,manifestAt=%d", c.budget, c.maintain, c.manifestAt), func(t *testing.T) {
			r := &fullDiskRun{t: t, s: storage.NewMem(), dir: t.TempDir(), fs: newBudgetFS(c.budget), log: &countingHandler{},
				oracles: []map[string][]byte{{}}, rng: rand.New(rand.NewPCG(seed, uint64(i)))}
			p := r.open()
			var (
				failed error
				last   int64 // the last version committed without an error
			)
			within(t, 20*time.Second, "the workload", func() {
				for v := range int64(2 * versions) {
					if v == c.manifestAt {
						r.fs.manifest.Store(true)
					}
					if err := r.commit(p, v); err != nil {
						failed = err
						return
					}
					last = v + 1
					if !c.maintain {
						continue
					}
					if err := p.Maintain(context.Background()); err != nil {
						failed = err
						return
					}
				}
			})
			if failed == nil {
				t.Fatalf("no call failed with %d of the %d bytes the workload writes", c.budget, total)
			}
			if !errors.Is(failed, syscall.ENOSPC) || !strings.Contains(failed.Error(), r.dir) {
				t.Fatalf("the error does not match ENOSPC or does not name the working directory %s: %v", r.dir, failed)
			}
			// Every later call fails at once with the same error.
			within(t, 2*time.Second, "GetStore after the failure", func() {
				if _, err := p.GetStore(context.Background(), last); !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("GetStore after the failure: %v, want the ENOSPC failure", err)
				}
			})
			// Let Pebble retry its failed flush for a while: the log
			// stays short.
			time.Sleep(500 * time.Millisecond)
			if c.manifestAt >= 0 && !r.log.has("pebble: fatal error") {
				t.Errorf("a failed MANIFEST write did not reach Pebble's Logger.Fatalf: %q", r.log.lines)
			}
			within(t, 5*time.Second, "Close", func() { p.Close() })
			if n := r.log.pebbleLines(); n > logBurst+2 {
				t.Errorf("%d warnings of Pebble logged for %d failed writes; want at most %d", n, r.fs.enospc.Load(), logBurst+2)
			}

			// Space returns: a new provider in the same directory resumes.
			r.fs.budget.Store(math.MaxInt64)
			r.fs.manifest.Store(false)
			p = r.open()
			defer p.Close()
			latest, err := p.LatestVersion(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if latest != last && latest != last+1 { // the failed commit may have made its version durable
				t.Fatalf("latest version %d after the failure, want %d (or %d)", latest, last, last+1)
			}
			r.check(p, latest)
			for v := latest; v < latest+4; v++ {
				if err := r.commit(p, v); err != nil {
					t.Fatalf("commit of version %d once space is back: %v", v+1, err)
				}
				if err := p.Maintain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			r.check(p, latest+4)
			t.Logf("failed after version %d: %v", last, failed)
		})
	}
}
