package memstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

func init() {
	// A second provider name, to test that a provider change is refused.
	state.Register("memstate-other", func() state.Provider { return memstate.New() })
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("CAIRN_STATE_CHILD"); dir != "" {
		childWriter(dir)
		return
	}
	os.Exit(m.Run())
}

func TestCorruptionIsReportedWithTheObjectName(t *testing.T) {
	ctx := context.Background()
	w := statecheck.Workload{Seed: 9, Keys: 100, PerBatch: 30}
	build := func(t *testing.T) (*storage.Local, string) {
		dir := t.TempDir()
		s, err := storage.OpenLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		p := open(t, s, state.Options{MaintenanceInterval: -1, SnapshotInterval: 5})
		for v := int64(0); v < 8; v++ {
			commit(t, p, v, w.Changes(v+1))
			if v+1 == 5 {
				if err := p.Maintain(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		p.Close()
		return s, dir
	}
	damage := map[string]func(b []byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-7] },
	}
	for _, object := range []string{"state/0/3/7.delta", "state/0/3/5.snapshot"} {
		for how, mutate := range damage {
			t.Run(filepath.Base(object)+" "+how, func(t *testing.T) {
				s, dir := build(t)
				path := filepath.Join(dir, filepath.FromSlash(object))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, mutate(b), 0o644); err != nil {
					t.Fatal(err)
				}
				p := open(t, s, manual)
				_, err = p.GetStore(ctx, 8)
				var ce *storage.CorruptError
				if !errors.As(err, &ce) || ce.Object != object {
					t.Fatalf("load of version 8: err = %v, want a CorruptError naming %s", err, object)
				}
				if !strings.Contains(err.Error(), object) {
					t.Fatalf("error message %q does not name %s", err, object)
				}
			})
		}
	}
}

func TestRetentionAfter300Commits(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	opts := state.Options{MaintenanceInterval: -1} // defaults otherwise: snapshot every 10, retain 100
	p := open(t, s, opts)
	w := statecheck.Workload{Seed: 3, Keys: 500, PerBatch: 10}
	for v := int64(0); v < 300; v++ {
		commit(t, p, v, w.Changes(v+1))
		if err := p.Maintain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := s.List(ctx, testID.Dir()+"/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, strings.TrimPrefix(o.Name, testID.Dir()+"/"))
	}
	// Version 201 is the oldest of the last 100; it is rebuilt from the
	// snapshot of 200 and delta 201.
	want := []string{"_meta"}
	for v := 200; v <= 300; v += 10 {
		want = append(want, fmt.Sprintf("%d.snapshot", v))
	}
	for v := 201; v <= 300; v++ {
		want = append(want, fmt.Sprintf("%d.delta", v))
	}
	if fmt.Sprint(sortedStrings(got)) != fmt.Sprint(sortedStrings(want)) {
		t.Fatalf("after 300 commits the store holds\n%v\nwant\n%v", got, sortedStrings(want))
	}
	p.Close()
	p = open(t, s, opts)
	for _, v := range []int64{201, 250, 300} {
		checkVersion(t, p, v, w.Oracle(v))
	}
	_, err = p.GetReadStore(ctx, 150)
	var ve *state.VersionError
	if !errors.As(err, &ve) || !ve.CleanedUp || ve.Oldest != 200 || ve.Latest != 300 {
		t.Fatalf("GetReadStore(150): err = %v, want a VersionError saying it was cleaned up, oldest 200", err)
	}
	for _, s := range []string{"cleaned up", "oldest version available is 200"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if _, err := p.GetReadStore(ctx, 301); !errors.Is(err, state.ErrVersionUnavailable) {
		t.Fatalf("GetReadStore(301): err = %v, want ErrVersionUnavailable", err)
	}
	if oldest, err := p.OldestVersion(ctx); err != nil || oldest != 200 {
		t.Fatalf("OldestVersion = %d, %v; want 200", oldest, err)
	}
}

// With no snapshot and delta 1 gone, no version can be rebuilt; the store
// says so instead of naming a version that does not load.
func TestNothingLoadableIsReported(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, manual)
	for v := int64(0); v < 3; v++ {
		commit(t, p, v, []statecheck.Op{{Key: fmt.Sprint(v), Value: []byte("x")}})
	}
	p.Close()
	s.Delete(ctx, "state/0/3/1.delta")
	p = open(t, s, manual)
	if _, err := p.OldestVersion(ctx); !errors.Is(err, state.ErrVersionUnavailable) || !strings.Contains(err.Error(), "no version can be rebuilt") {
		t.Fatalf("OldestVersion: err = %v, want ErrVersionUnavailable saying no version can be rebuilt", err)
	}
	if _, err := p.GetReadStore(ctx, 3); err == nil {
		t.Fatal("version 3 loaded without delta 1")
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestProviderOrSchemaChangeRefused(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, manual)
	commit(t, p, 0, []statecheck.Op{{Key: "a", Value: []byte("1")}})
	p.Close()
	cases := []struct {
		provider string
		schema   state.Schema
		setting  string
		old, new string
	}{
		{"memstate-other", testSchema, "provider", "memstate", "memstate-other"},
		{memstate.Name, state.Schema{Key: "int64", Value: "bytes"}, "key schema", "string", "int64"},
		{memstate.Name, state.Schema{Key: "string", Value: "json:main.Event"}, "value schema", "bytes", "json:main.Event"},
	}
	for _, c := range cases {
		_, err := state.Open(ctx, c.provider, s, testID, c.schema, manual)
		var ce *state.ConfigError
		if !errors.As(err, &ce) || ce.Setting != c.setting || ce.Old != c.old || ce.New != c.new {
			t.Fatalf("open with changed %s: err = %v, want ConfigError %s %q -> %q", c.setting, err, c.setting, c.old, c.new)
		}
		if !strings.Contains(err.Error(), c.old) || !strings.Contains(err.Error(), c.new) || !strings.Contains(err.Error(), "new checkpoint location") {
			t.Errorf("message does not name old and new values and what to do: %v", err)
		}
	}
	// The refusal changed nothing: the original configuration still opens.
	p = open(t, s, manual)
	checkVersion(t, p, 1, map[string][]byte{"a": []byte("1")})
}

func TestSecondWriterRefused(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p1 := open(t, s, manual)
	p2 := open(t, s, manual)
	a, _ := p1.GetStore(ctx, 0)
	b, _ := p2.GetStore(ctx, 0)
	c, _ := open(t, s, manual).GetStore(ctx, 0)
	a.Put([]byte("k"), []byte("from p1"))
	b.Put([]byte("k"), []byte("from p2"))
	c.Put([]byte("k"), []byte("from p1"))
	if _, err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := b.Commit(ctx)
	if !errors.Is(err, state.ErrConcurrentWriter) || !strings.Contains(err.Error(), "state/0/3/1.delta") {
		t.Fatalf("second writer's commit: err = %v, want ErrConcurrentWriter naming state/0/3/1.delta", err)
	}
	// A deterministic replay of the same batch writes the same delta: accepted.
	if v, err := c.Commit(ctx); err != nil || v != 1 {
		t.Fatalf("replay of the same batch: v=%d err=%v, want 1, nil", v, err)
	}
}

func TestStoreAbortedWhenItsTaskEnds(t *testing.T) {
	p := open(t, storage.NewMem(), manual)
	task, cancel := context.WithCancel(context.Background())
	st, err := p.GetStore(task, 0)
	if err != nil {
		t.Fatal(err)
	}
	st.Put([]byte("k"), []byte("v"))
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st2, err := p.GetStore(context.Background(), 0)
		if err == nil {
			st2.Abort()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still open 10s after its task ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := st.Commit(context.Background()); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Commit after the task ended: err = %v, want ErrStoreClosed", err)
	}
	if v, _ := p.LatestVersion(context.Background()); v != 0 {
		t.Fatalf("an aborted store committed: latest version %d", v)
	}
}

func TestBackgroundMaintenanceSnapshots(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	p := open(t, s, state.Options{MaintenanceInterval: time.Hour, SnapshotInterval: 5})
	w := statecheck.Workload{Seed: 5, Keys: 50, PerBatch: 5}
	for v := int64(0); v < 5; v++ {
		commit(t, p, v, w.Changes(v+1))
	}
	// The fifth delta asks the maintenance goroutine for a snapshot at once,
	// not after the hour.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Get(ctx, "state/0/3/5.snapshot"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot of version 5 ten seconds after the fifth commit")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childWriter is the body of the child process of TestSIGKILLWhileCommitting:
// it commits versions forever, printing each one, until it is killed.
func childWriter(dir string) {
	ctx := context.Background()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p, err := state.Open(ctx, memstate.Name, s, testID, testSchema,
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

var killWorkload = statecheck.Workload{Seed: 77, Keys: 20000, PerBatch: 3000}

// TestSIGKILLWhileCommitting runs a real writer process, kills it with
// SIGKILL at a random point, and checks in this process that the location
// reopens at (at least) the last version the child reported, with exactly
// the oracle's contents; three rounds, each child resuming the last one.
func TestSIGKILLWhileCommitting(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes; runs without -short")
	}
	rng := rand.New(rand.NewPCG(seed(t), 0))
	dir := t.TempDir()
	var lastSeen int64
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CAIRN_STATE_CHILD="+dir)
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		target := lastSeen + 3 + int64(rng.IntN(15))
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
		p := open(t, s, manual)
		latest, _ := p.LatestVersion(context.Background())
		if latest < lastSeen {
			t.Fatalf("round %d: child reported version %d committed, the location reopens at %d", round, lastSeen, latest)
		}
		checkVersion(t, p, latest, killWorkload.Oracle(latest))
		t.Logf("round %d: killed after version %d was reported; recovered version %d matches the oracle", round, lastSeen, latest)
		p.Close()
	}
}
