package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-data/cairn/internal/statecheck"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

// The demo job: one state store, written version by version by a child
// process with a workload that any process can recompute from the seed.
const (
	demoKeys             = 5000
	demoPerBatch         = 500
	demoSnapshotInterval = 10
	demoMaintenance      = 50 * time.Millisecond
	demoMaxVersions      = 100_000
)

var (
	demoStore  = state.StoreID{Operator: 0, Partition: 0}
	demoSchema = state.SchemaOf[string, []byte](state.StringCodec{}, state.BytesCodec{})
)

func demoWorkload(seed uint64) statecheck.Workload {
	return statecheck.Workload{Seed: seed, Keys: demoKeys, PerBatch: demoPerBatch}
}

func demoStateCommand() *command {
	var (
		dir      string
		versions int64
		seed     uint64
	)
	return &command{
		name:    "demo-state",
		summary: "the state store alone: write state in a child process, SIGKILL it, recover and check against an oracle",
		doc: `
The state store layer end to end on local disk. A child process
(this same program) commits --versions versions of random puts and deletes
to a state store in a checkpoint location, each version a durable delta,
with a snapshot every 10 versions. At a random point the demo kills the
child with SIGKILL, reopens the checkpoint, and checks that the recovered
state is at least the last version the child reported and equals, key by
key, an in-memory oracle that recomputed the same updates. Then a second
child resumes from the recovered version to the end, and the final state is
checked again, with every object of the location verified.

The seed decides the updates and the kill point; the demo prints it, and
--seed replays the same run. Exit status 1 if anything differs from the
oracle; the checkpoint is then kept for investigation.`,
		example: `
cairn demo-state
cairn demo-state --dir /tmp/cairn-demo --versions 1000
cairn checkpoint verify /tmp/cairn-demo/checkpoint`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "", "keep the checkpoint in `DIR`/checkpoint (default: a temporary directory, removed at the end)")
			fs.Int64Var(&versions, "versions", 300, "commit `N` versions, at least 4")
			fs.Uint64Var(&seed, "seed", 0, "`SEED` of the updates and the kill point, to replay a run (default: random)")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if versions < 4 || versions > demoMaxVersions {
				return usagef(inv.cmd, "--versions %d is out of range: give 4 to %d", versions, demoMaxVersions)
			}
			if !inv.set["seed"] {
				seed = rand.Uint64()
			}
			return runDemo(ctx, c, dir, versions, seed)
		},
	}
}

// demoFailure is a check of the demo that did not hold.
type demoFailure struct{ msg string }

func (e *demoFailure) Error() string { return e.msg }

func failf(format string, a ...any) error { return &demoFailure{fmt.Sprintf(format, a...)} }

func runDemo(ctx context.Context, c *cli, dir string, n int64, seed uint64) error {
	start := time.Now()
	w := c.stdout
	var loc, tmp string
	if dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "cairn-demo-"); err != nil {
			return fmt.Errorf("create a temporary directory for the demo: %w (give --dir DIR to use another place)", err)
		}
		loc = filepath.Join(tmp, "checkpoint")
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		loc = filepath.Join(abs, "checkpoint")
	}
	keep := tmp == ""
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	s, err := storage.OpenLocal(loc)
	if err != nil {
		return fmt.Errorf("open the demo's checkpoint location: %w", err)
	}
	defer s.Close()
	if objs, err := s.List(ctx, ""); err != nil {
		return err
	} else if len(objs) > 0 {
		return fmt.Errorf("%s already holds a checkpoint (%s); the demo starts from an empty location: remove it (rm -r %s) or give another --dir",
			loc, plural(len(objs), "object"), loc)
	}

	// The kill point: a version in the middle half, plus up to a
	// millisecond, so that the kill lands anywhere inside a commit.
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	lo, hi := max(1, n/4), min(n-1, max(1, 3*n/4))
	target := lo + rng.Int64N(hi-lo+1)
	delay := time.Duration(rng.IntN(1000)) * time.Microsecond

	where := loc + " (temporary: removed at the end; --dir DIR keeps it)"
	if tmp == "" {
		where = loc
	}
	fmt.Fprintf(w, "cairn demo-state: a writer process commits versions of a state store; we kill it with\n"+
		"SIGKILL, recover from the checkpoint, and check every key against an oracle (a Go\n"+
		"map that replays the same updates).\n\n")
	fmt.Fprintf(w, "  seed        %d (replay this run with --seed %d)\n", seed, seed)
	fmt.Fprintf(w, "  checkpoint  %s\n", where)
	fmt.Fprintf(w, "  store       %s, provider %s: one delta per version, a snapshot every\n"+
		"              %d versions, the last %d versions kept\n", demoStore.Dir(), memstate.Name,
		demoSnapshotInterval, state.Options{}.WithDefaults().RetainVersions)
	fmt.Fprintf(w, "  workload    %d versions of %d random puts and deletes over %d keys\n\n", n, demoPerBatch, demoKeys)

	err = demoSteps(ctx, c, s, loc, n, seed, target, delay)
	var df *demoFailure
	if errors.As(err, &df) {
		keep = true
		fmt.Fprintf(c.stderr, "\ncairn demo-state: FAILED: %s\n  replay with: cairn demo-state --seed %d --versions %d\n  the checkpoint is kept for investigation in %s\n",
			df.msg, seed, n, loc)
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOK: the state survived a SIGKILL; recovered and final state matched the oracle (%.1fs).\n",
		time.Since(start).Seconds())
	if tmp == "" {
		cairn := commandPrefix()
		fmt.Fprintf(w, "\nThe checkpoint is kept in %s. Look into it with:\n", loc)
		fmt.Fprintf(w, "  %s checkpoint inspect %s\n", cairn, loc)
		fmt.Fprintf(w, "  %s checkpoint verify %s\n", cairn, loc)
		fmt.Fprintf(w, "  %s state read %s --operator 0 --partition 0 --version %d | head\n", cairn, loc, max(1, n-50))
	}
	return nil
}

func demoSteps(ctx context.Context, c *cli, s storage.Storage, loc string, n int64, seed uint64, target int64, delay time.Duration) error {
	w := c.stdout
	wl := demoWorkload(seed)

	// 1. Write, and kill the writer.
	fmt.Fprintf(w, "1. A writer process commits versions 1 to %d; we kill it after it reports version %d.\n", n, target)
	wr, err := startWriter(ctx, loc, seed, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   writer started (pid %d)\n", wr.cmd.Process.Pid)
	prog := newProgress(c, n)
	for wr.last < target {
		v, ok := wr.next()
		if !ok {
			break
		}
		if v == 1 { // the writer holds the lease by its first commit
			if err := secondWriterRefused(ctx, s, wr.cmd.Process.Pid); err != nil {
				wr.cmd.Process.Kill()
				wr.cmd.Wait()
				return err
			}
			fmt.Fprintf(w, "   a second writer on the same location is refused: the lease names pid %d\n", wr.cmd.Process.Pid)
		}
		prog.update(v)
	}
	if wr.last < target {
		err := wr.cmd.Wait()
		prog.done(wr.last)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return failf("the writer stopped at version %d, before the kill point %d: %v\n%s", wr.last, target, err, wr.stderr.String())
	}
	time.Sleep(delay)
	reported := wr.last
	killErr := wr.cmd.Process.Signal(syscall.SIGKILL)
	for { // lines the writer printed before it died
		v, ok := wr.next()
		if !ok {
			break
		}
		prog.update(v)
	}
	waitErr := wr.cmd.Wait()
	prog.done(wr.last)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
		fmt.Fprintf(w, "   the writer finished all %d versions before the kill landed (%v)\n", n, killErr)
	case errors.As(waitErr, &ee) && killedBySIGKILL(ee):
		when := delay.String() + " after"
		if delay == 0 {
			when = "right after"
		}
		fmt.Fprintf(w, "   killed with SIGKILL %s it reported version %d", when, reported)
		if wr.last > reported {
			fmt.Fprintf(w, " (by then it had reported version %d)", wr.last)
		}
		fmt.Fprintln(w)
	default:
		return failf("the writer failed before it was killed: %v\n%s", waitErr, wr.stderr.String())
	}

	// 2. Recover and compare with the oracle.
	latest, how, keys, err := recoverAndCompare(ctx, s, wl, -1)
	if err != nil {
		return err
	}
	switch {
	case latest < wr.last:
		return failf("LOST VERSIONS: the writer reported version %d committed, but the checkpoint reopens at version %d", wr.last, latest)
	case latest > wr.last+1:
		return failf("the checkpoint reopens at version %d, but the writer reported only up to %d: more than the one commit in flight", latest, wr.last)
	case latest == wr.last+1:
		fmt.Fprintf(w, "2. Reopened the checkpoint at version %d: the writer's last report was %d, and its commit\n"+
			"   of %d was durable before the kill, just not reported yet.\n", latest, wr.last, latest)
	default:
		fmt.Fprintf(w, "2. Reopened the checkpoint at version %d, the last version the writer reported.\n", latest)
	}
	fmt.Fprintf(w, "   Rebuilt version %d from %s.\n", latest, how)
	fmt.Fprintf(w, "   Recovered state matches the oracle: %d keys at version %d.\n", keys, latest)

	// 3. Resume to the end.
	if latest < n {
		fmt.Fprintf(w, "3. A new writer process resumes from version %d and commits up to %d.\n", latest, n)
		wr, err = startWriter(ctx, loc, seed, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "   writer started (pid %d)\n", wr.cmd.Process.Pid)
		prog = newProgress(c, n)
		first := int64(-1)
		for {
			v, ok := wr.next()
			if !ok {
				break
			}
			if first < 0 {
				first = v
			}
			prog.update(v)
		}
		err := wr.cmd.Wait()
		prog.done(wr.last)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return failf("the resumed writer failed: %v\n%s", err, wr.stderr.String())
		}
		if first == latest+1 {
			fmt.Fprintf(w, "   it took over the killed writer's lease at once: same machine, process gone\n")
		}
		if first != latest+1 || wr.last != n {
			return failf("the resumed writer committed versions %d to %d; want %d to %d", first, wr.last, latest+1, n)
		}
	} else {
		fmt.Fprintf(w, "3. Nothing left to resume: all %d versions are committed.\n", n)
	}

	// 4. Check the final state and every object.
	final, _, keys, err := recoverAndCompare(ctx, s, wl, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "4. Final state matches the oracle: %d keys at version %d.\n", keys, final)
	rep, err := verifyLocation(ctx, s, "")
	if err != nil {
		return err
	}
	if len(rep.problems) > 0 {
		var lines []string
		for _, p := range rep.problems {
			lines = append(lines, p.object+": "+p.what)
		}
		return failf("checkpoint verify found problems:\n%s", strings.Join(lines, "\n"))
	}
	fmt.Fprintf(w, "   Every object verifies (checksums and records): %s, %s.\n", plural(rep.objects, "object"), humanBytes(rep.bytes))
	return nil
}

// secondWriterRefused checks that a second writer cannot take the
// checkpoint location while the writer process pid holds it.
func secondWriterRefused(ctx context.Context, s storage.Storage, pid int) error {
	lease, err := metalog.AcquireLease(ctx, s, metalog.LeaseOptions{Owner: "cairn demo (second writer)"})
	if err == nil {
		lease.Close(ctx)
		return failf("a second writer acquired the lease of a location that writer pid %d holds", pid)
	}
	var held *metalog.LeaseHeldError
	if !errors.As(err, &held) || held.PID != pid {
		return failf("a second writer was not refused for the right reason: %v", err)
	}
	return nil
}

// recoverAndCompare opens the demo store as a restarted job would, loads
// version v (-1: the latest) and compares it with the oracle. It returns
// the version, how it was rebuilt and its number of keys.
func recoverAndCompare(ctx context.Context, s storage.Storage, wl statecheck.Workload, v int64) (int64, string, int64, error) {
	p, err := state.Open(ctx, memstate.Name, s, demoStore, demoSchema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		return 0, "", 0, failf("reopen the checkpoint: %v", err)
	}
	defer p.Close()
	if v < 0 {
		if v, err = p.LatestVersion(ctx); err != nil {
			return 0, "", 0, failf("latest version: %v", err)
		}
	}
	how, err := rebuildPath(ctx, s, v)
	if err != nil {
		return 0, "", 0, err
	}
	rs, err := p.GetReadStore(ctx, v)
	if err != nil {
		return 0, "", 0, failf("load version %d: %v", v, err)
	}
	defer rs.Abort()
	if err := statecheck.Compare(rs, wl.Oracle(v)); err != nil {
		return 0, "", 0, failf("MISMATCH: the recovered state differs from the oracle: %v", err)
	}
	return v, how, rs.Metrics().Keys, nil
}

// rebuildPath says which files a load of version v reads: the newest
// snapshot at or below v and the deltas after it.
func rebuildPath(ctx context.Context, s storage.Storage, v int64) (string, error) {
	objs, err := s.List(ctx, demoStore.Dir()+"/")
	if err != nil {
		return "", err
	}
	snap := int64(0)
	for _, o := range objs {
		if sv, kind, ok := memstate.ParseFileName(path.Base(o.Name)); ok && kind == "snapshot" && sv <= v {
			snap = max(snap, sv)
		}
	}
	if snap == 0 {
		return fmt.Sprintf("%s (no snapshot yet)", plural64(v, "delta")), nil
	}
	return fmt.Sprintf("the snapshot of version %d and %s", snap, plural64(v-snap, "delta")), nil
}

func killedBySIGKILL(ee *exec.ExitError) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// commandPrefix is how the user runs this program: "go run ./cmd/cairn"
// when it was built by go run, "cairn" otherwise.
func commandPrefix() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/cairn"
	}
	return "cairn"
}

// writer is a running demo-writer child process.
type writer struct {
	cmd    *exec.Cmd
	lines  *bufio.Scanner
	stderr *strings.Builder
	last   int64 // the last version it reported
}

// startWriter runs this program's demo-writer command.
func startWriter(ctx context.Context, loc string, seed uint64, n int64) (*writer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to run the writer process: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "demo-writer", "--checkpoint", loc,
		"--seed", strconv.FormatUint(seed, 10), "--versions", strconv.FormatInt(n, 10))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	wr := &writer{cmd: cmd, lines: bufio.NewScanner(stdout), stderr: &strings.Builder{}}
	cmd.Stderr = wr.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the writer process %s: %w", exe, err)
	}
	return wr, nil
}

// next returns the next version the writer reports, or false when its
// output ends.
func (wr *writer) next() (int64, bool) {
	for wr.lines.Scan() {
		if rest, ok := strings.CutPrefix(wr.lines.Text(), "committed "); ok {
			if v, err := strconv.ParseInt(rest, 10, 64); err == nil {
				wr.last = v
				return v, true
			}
		}
	}
	return 0, false
}

// progress shows the writer's progress: one line redrawn in place on a
// terminal, a plain line every tenth of the way otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	total int64
	step  int64
	drawn time.Time
	shown int64 // the version on the screen
}

func newProgress(c *cli, total int64) *progress {
	return &progress{w: c.stdout, tty: c.tty, total: total, step: max(1, total/10), shown: -1}
}

func (p *progress) update(v int64) {
	if p.tty {
		if time.Since(p.drawn) >= 40*time.Millisecond {
			fmt.Fprintf(p.w, "\r\033[K   committed version %d of %d", v, p.total)
			p.drawn, p.shown = time.Now(), v
		}
		return
	}
	if v%p.step == 0 {
		fmt.Fprintf(p.w, "   committed version %d of %d\n", v, p.total)
		p.shown = v
	}
}

// done shows the final version and ends the line.
func (p *progress) done(v int64) {
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K   committed version %d of %d\n", v, p.total)
	case p.shown != v && v > 0:
		fmt.Fprintf(p.w, "   committed version %d of %d\n", v, p.total)
	}
}

func demoWriterCommand() *command {
	var (
		checkpoint string
		versions   int64
		seed       uint64
	)
	return &command{
		name:   "demo-writer",
		hidden: true,
		doc: `
The child process of 'cairn demo-state': opens the demo's state store in the
checkpoint location, resumes from its latest version, and commits the
demo workload of --seed up to version --versions, printing "committed V"
after each commit. Not meant to be run by hand.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&checkpoint, "checkpoint", "", "checkpoint location `DIR`")
			fs.Int64Var(&versions, "versions", 300, "commit up to this version")
			fs.Uint64Var(&seed, "seed", 0, "seed of the workload")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if checkpoint == "" {
				return usagef(inv.cmd, "--checkpoint is required")
			}
			return runDemoWriter(ctx, c, checkpoint, seed, versions)
		},
	}
}

func runDemoWriter(ctx context.Context, c *cli, loc string, seed uint64, n int64) error {
	s, err := storage.OpenLocal(loc)
	if err != nil {
		return err
	}
	defer s.Close()
	// One live writer per checkpoint location: the lease refuses a second
	// one, and takes over at once from a writer of this machine whose
	// process is gone (as after the demo's SIGKILL).
	lease, err := metalog.AcquireLease(ctx, s, metalog.LeaseOptions{Owner: "cairn demo writer"})
	if err != nil {
		return err
	}
	defer lease.Close(context.WithoutCancel(ctx))
	p, err := state.Open(ctx, memstate.Name, s, demoStore, demoSchema,
		state.Options{MaintenanceInterval: demoMaintenance, SnapshotInterval: demoSnapshotInterval})
	if err != nil {
		return err
	}
	defer p.Close()
	v, err := p.LatestVersion(ctx)
	if err != nil {
		return err
	}
	wl := demoWorkload(seed)
	out := bufio.NewWriter(c.stdout)
	for ; v < n; v++ {
		select {
		case <-lease.Lost():
			return fmt.Errorf("stopped before version %d: %w", v+1, lease.Err())
		default:
		}
		st, err := p.GetStore(ctx, v)
		if err != nil {
			return err
		}
		if err := statecheck.Write(st, wl.Changes(v+1)); err != nil {
			st.Abort()
			return err
		}
		if _, err := st.Commit(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "committed %d\n", v+1)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return nil
}
