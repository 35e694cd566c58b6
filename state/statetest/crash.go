package statetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

var crashWorkload = statecheck.Workload{Seed: 42, Keys: 60, PerBatch: 25}

var crashOpts = state.Options{MaintenanceInterval: -1, SnapshotInterval: 3, RetainVersions: 4}

const crashVersions = 12

// runWorkload commits crashVersions versions, with maintenance after every
// second commit, stopping at the first error as a dying process would. It
// returns the last version whose Commit returned nil.
func (h Harness) runWorkload(t testing.TB, s storage.Storage) (acked int64, err error) {
	ctx := context.Background()
	p, err := state.Open(ctx, h.Name, s, testID, testSchema, h.options(t, s, crashOpts, false))
	if err != nil {
		return 0, err
	}
	defer p.Close()
	for v := int64(1); v <= crashVersions; v++ {
		st, err := p.GetStore(ctx, v-1)
		if err != nil {
			return acked, err
		}
		if err := statecheck.Write(st, crashWorkload.Changes(v)); err != nil {
			return acked, err
		}
		if _, err := st.Commit(ctx); err != nil {
			return acked, err
		}
		acked = v
		if v%2 == 0 {
			if err := p.Maintain(ctx); err != nil {
				return acked, err
			}
		}
	}
	return acked, nil
}

// recoverAndCheck reopens the location as a new process (on the same
// machine, or a fresh one), checks that it is at the last acknowledged
// version (or one more, when the interrupted commit's changes landed) with
// exactly the oracle's contents, and that the job can go on from there.
func (h Harness) recoverAndCheck(t *testing.T, s storage.Storage, acked int64, fresh bool, label string) {
	t.Helper()
	ctx := context.Background()
	p, err := state.Open(ctx, h.Name, s, testID, testSchema, h.options(t, s, crashOpts, fresh))
	if err != nil {
		t.Fatalf("%s: reopen: %v", label, err)
	}
	defer p.Close()
	latest, _ := p.LatestVersion(ctx)
	if latest != acked && latest != acked+1 {
		t.Fatalf("%s: reopened at version %d, want %d (last acknowledged) or %d", label, latest, acked, acked+1)
	}
	st, err := p.GetStore(ctx, latest)
	if err != nil {
		t.Fatalf("%s: GetStore(%d) after recovery: %v", label, latest, err)
	}
	if err := statecheck.Compare(st, crashWorkload.Oracle(latest)); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if err := statecheck.Write(st, crashWorkload.Changes(latest+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx); err != nil {
		t.Fatalf("%s: the recovered job cannot commit version %d: %v", label, latest+1, err)
	}
	checkVersion(t, p, latest+1, crashWorkload.Oracle(latest+1))
	if err := p.Maintain(ctx); err != nil {
		t.Fatalf("%s: maintenance after recovery: %v", label, err)
	}
}

func (h Harness) countOps(t *testing.T) int {
	f := faulty.New(storage.NewMem())
	if acked, err := h.runWorkload(t, f); err != nil || acked != crashVersions {
		t.Fatalf("workload without faults: acked %d, err %v", acked, err)
	}
	return f.Ops()
}

// crashPoints returns the operations to fail: every one, or every
// CrashStride-th and the last.
func (h Harness) crashPoints(n int) []int {
	stride := max(h.CrashStride, 1)
	var ks []int
	for k := 1; k <= n; k += stride {
		ks = append(ks, k)
	}
	if ks[len(ks)-1] != n {
		ks = append(ks, n)
	}
	return ks
}

// testCrashAtEveryOperation crashes the storage at the k-th operation for
// every k, with the interrupted Put landing or not, over the in-memory and
// the local backend, and recovers on the same machine for even k and on a
// fresh one for odd k.
func testCrashAtEveryOperation(t *testing.T, h Harness) {
	n := h.countOps(t)
	t.Logf("the workload issues %d storage operations", n)
	backends := []struct {
		name       string
		newStorage func(t *testing.T) storage.Storage
	}{
		{"mem", func(t *testing.T) storage.Storage { return storage.NewMem() }},
		{"local", func(t *testing.T) storage.Storage {
			s, err := storage.OpenLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			crashAtPoints(t, h, h.crashPoints(n), []bool{false, true}, func(int) storage.Storage { return b.newStorage(t) })
		})
	}
	names := make([]string, 0, len(h.Backends))
	for name := range h.Backends {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			open := h.Backends[name](t)
			var ks []int
			for i, k := range h.crashPoints(n) {
				if i%5 == 0 {
					ks = append(ks, k)
				}
			}
			crashAtPoints(t, h, ks, []bool{true}, open)
		})
	}
}

// crashAtPoints runs the crash-and-recover check at each crash point k,
// with each landing, on the storage open makes for k.
func crashAtPoints(t *testing.T, h Harness, ks []int, landings []bool, open func(k int) storage.Storage) {
	for _, k := range ks {
		for _, lands := range landings {
			inner := open(k)
			f := faulty.New(inner)
			f.PutLandsOnCrash = lands
			f.CrashAt(k, nil)
			acked, err := h.runWorkload(t, f)
			fresh := k%2 == 1
			label := fmt.Sprintf("crash at operation %d (put lands: %v, recovery on a fresh machine: %v)", k, lands, fresh)
			if err == nil {
				t.Fatalf("%s: workload succeeded after a crash", label)
			}
			if !errors.Is(err, faulty.ErrCrashed) {
				t.Fatalf("%s: error does not say the storage failed: %v", label, err)
			}
			h.recoverAndCheck(t, inner, acked, fresh, label)
		}
	}
}

// testFailAtEveryOperation fails the k-th operation once (a transient
// error such as a full disk): the workload stops with that error and the
// location recovers.
func testFailAtEveryOperation(t *testing.T, h Harness) {
	n := h.countOps(t)
	for _, k := range h.crashPoints(n) {
		inner := storage.NewMem()
		f := faulty.New(inner)
		f.FailAt(k, nil)
		acked, err := h.runWorkload(t, f)
		label := fmt.Sprintf("failure of operation %d", k)
		if err != nil && !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("%s: error does not carry the cause: %v", label, err)
		}
		if err == nil {
			t.Fatalf("%s: workload ignored a failed storage operation", label)
		}
		h.recoverAndCheck(t, inner, acked, k%2 == 1, label)
	}
}

// A failed commit leaves the provider usable: the same process retries.
func testRetryAfterFailedCommit(t *testing.T, h Harness) {
	ctx := context.Background()
	f := faulty.New(storage.NewMem())
	p := h.open(t, f, manual)
	commit(t, p, 0, crashWorkload.Changes(1))
	f.FailAt(1, faulty.Writes)
	st, _ := p.GetStore(ctx, 1)
	statecheck.Write(st, crashWorkload.Changes(2))
	if _, err := st.Commit(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("Commit: err = %v, want the injected failure", err)
	}
	if v, _ := p.LatestVersion(ctx); v != 1 {
		t.Fatalf("LatestVersion after failed commit = %d, want 1", v)
	}
	checkVersion(t, p, 1, crashWorkload.Oracle(1))
	commit(t, p, 1, crashWorkload.Changes(2))
	checkVersion(t, p, 2, crashWorkload.Oracle(2))
}

// childEnv names the environment variable that makes the test binary the
// writer of testSIGKILL.
const childEnv = "CAIRN_STATE_CHILD"

// Main is the TestMain of a provider's tests: it runs the tests, or, in
// the child process of the SIGKILL test, the writer it kills.
func Main(m *testing.M, h Harness) {
	if dir := os.Getenv(childEnv); dir != "" {
		childWriter(h, dir)
		return
	}
	os.Exit(m.Run())
}

var killWorkload = func() statecheck.Workload {
	if raceEnabled { // the parent and the child are built alike
		return statecheck.Workload{Seed: 77, Keys: 5000, PerBatch: 500}
	}
	return statecheck.Workload{Seed: 77, Keys: 20000, PerBatch: 3000}
}()

// childWriter commits versions forever, printing each one, until it is
// killed. It runs with the provider's default options.
func childWriter(h Harness, dir string) {
	ctx := context.Background()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p, err := state.Open(ctx, h.Name, s, testID, testSchema,
		state.Options{MaintenanceInterval: 20 * time.Millisecond, SnapshotInterval: 5, RetainVersions: 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	v, _ := p.LatestVersion(ctx)
	out := bufio.NewWriter(os.Stdout)
	for ; ; v++ {
		st, err := p.GetStore(ctx, v)
		if err == nil {
			err = statecheck.Write(st, killWorkload.Changes(v+1))
		}
		if err == nil {
			_, err = st.Commit(ctx)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintf(out, "committed %d\n", v+1)
		out.Flush()
	}
}

// testSIGKILL runs a real writer process, kills it with SIGKILL at a
// random point, and checks in this process that the location reopens at
// (at least) the last version the child reported, with exactly the
// oracle's contents; three rounds, each child resuming the last one (and
// its local files, if the provider keeps any: the children share a
// TMPDIR).
func testSIGKILL(t *testing.T, h Harness) {
	if testing.Short() {
		t.Skip("spawns processes; runs without -short")
	}
	rng := rand.New(rand.NewPCG(Seed(t), 0))
	dir := t.TempDir()
	tmp := t.TempDir()
	var lastSeen int64
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, "TMPDIR="+tmp)
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		target := lastSeen + 3 + int64(rng.IntN(15))
		if raceEnabled {
			target = lastSeen + 1 + int64(rng.IntN(4))
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			v, _ := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "committed "), 10, 64)
			lastSeen = v
			if v >= target {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond) // land somewhere inside a commit
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if lastSeen < target {
			t.Fatalf("round %d: child stopped at version %d before being killed: %s", round, lastSeen, stderr.String())
		}
		s, err := storage.OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		p := h.openOn(t, s, manual, true)
		latest, _ := p.LatestVersion(context.Background())
		if latest < lastSeen {
			t.Fatalf("round %d: child reported version %d committed, the location reopens at %d", round, lastSeen, latest)
		}
		checkVersion(t, p, latest, killWorkload.Oracle(latest))
		t.Logf("round %d: killed after version %d was reported; recovered version %d matches the oracle", round, lastSeen, latest)
		p.Close()
	}
}
