package metalog

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustAcquire(t *testing.T, s storage.Storage, opts LeaseOptions) *Lease {
	t.Helper()
	l, err := AcquireLease(context.Background(), s, opts)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func mustBeHeld(t *testing.T, s storage.Storage, opts LeaseOptions) *LeaseHeldError {
	t.Helper()
	l, err := AcquireLease(context.Background(), s, opts)
	if err == nil {
		l.Close(context.Background())
		t.Fatalf("AcquireLease succeeded on a location whose lease is held")
	}
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("AcquireLease: err = %v, want a *LeaseHeldError", err)
	}
	return held
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// putRecord writes a lease object as another process would have.
func putRecord(t *testing.T, s storage.Storage, gen int64, r leaseRecord) {
	t.Helper()
	if err := putLease(context.Background(), s, gen, r, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func leaseNames(t *testing.T, s storage.Storage) []string {
	t.Helper()
	objs, err := s.List(context.Background(), LeasePrefix+"/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	return names
}

func TestLeaseHeldThenReleased(t *testing.T) {
	ctx := context.Background()
	s := namedMem(t)
	first := mustAcquire(t, s, LeaseOptions{Owner: "query clicks"})
	if first.Generation() != 1 || first.Object() != "_lease/1" {
		t.Fatalf("first lease is %s (generation %d)", first.Object(), first.Generation())
	}
	held := mustBeHeld(t, s, LeaseOptions{})
	host, _ := os.Hostname()
	msg := held.Error()
	for _, want := range []string{s.Location(), "pid " + strconv.Itoa(os.Getpid()), host, `"query clicks"`, "_lease/1", "this very process"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !held.SameMachine || held.PID != os.Getpid() {
		t.Errorf("LeaseHeldError = %+v, want this machine and pid", held)
	}

	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if isClosed(first.Lost()) || first.Err() != nil {
		t.Fatalf("Close reported a loss: %v", first.Err())
	}
	if err := first.Renew(ctx); !errors.Is(err, ErrLeaseClosed) {
		t.Fatalf("Renew after Close: err = %v, want ErrLeaseClosed", err)
	}
	second := mustAcquire(t, s, LeaseOptions{}) // at once: released, not expired
	if second.Generation() != 2 {
		t.Fatalf("takeover made generation %d, want 2", second.Generation())
	}
	if got := leaseNames(t, s); len(got) != 1 || got[0] != "_lease/2" {
		t.Fatalf("lease objects after takeover: %v, want only _lease/2", got)
	}
}

func TestLeaseExpiredIsTakenOver(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	clock := newFakeClock()
	opts := LeaseOptions{Now: clock.Now, TTL: 30 * time.Second}
	old := mustAcquire(t, s, opts)
	clock.Advance(29 * time.Second)
	mustBeHeld(t, s, opts)
	clock.Advance(2 * time.Second)
	taker := mustAcquire(t, s, opts)
	if taker.Generation() != 2 {
		t.Fatalf("takeover made generation %d, want 2", taker.Generation())
	}
	if isClosed(old.Lost()) {
		t.Fatal("old holder lost the lease before its next renewal")
	}
	err := old.Renew(ctx)
	if !errors.Is(err, ErrLeaseLost) || !isClosed(old.Lost()) {
		t.Fatalf("old holder's renewal: err = %v, Lost closed %v; want ErrLeaseLost", err, isClosed(old.Lost()))
	}
	if !errors.Is(old.Err(), ErrLeaseLost) || !strings.Contains(old.Err().Error(), "_lease/2") {
		t.Fatalf("Err = %v, want ErrLeaseLost naming _lease/2", old.Err())
	}
	// The old holder neither revives nor releases the new lease.
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mustBeHeld(t, s, opts)
	if err := taker.Renew(ctx); err != nil {
		t.Fatalf("new holder's renewal: %v", err)
	}
}

func TestLeaseRenewalExtendsExpiry(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	clock := newFakeClock()
	opts := LeaseOptions{Now: clock.Now}
	l := mustAcquire(t, s, opts)
	for range 5 {
		clock.Advance(20 * time.Second)
		if err := l.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		if want := clock.Now().Add(DefaultLeaseTTL); !l.Expires().Equal(want) {
			t.Fatalf("Expires = %v, want %v", l.Expires(), want)
		}
		mustBeHeld(t, s, opts) // 100 s after acquisition, still held
	}
}

// A holder superseded twice while it was paused still finds out: the
// generation after its own was deleted by the second takeover, but a newer
// one is listed. (Checking only for the next generation misses this.)
func TestLeaseLossSeenAfterOldGenerationsDeleted(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	clock := newFakeClock()
	opts := LeaseOptions{Now: clock.Now}
	old := mustAcquire(t, s, opts)
	clock.Advance(time.Minute)
	second := mustAcquire(t, s, opts)
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	third := mustAcquire(t, s, opts) // deletes _lease/1 and _lease/2
	if third.Generation() != 3 {
		t.Fatalf("generation %d, want 3", third.Generation())
	}
	if err := old.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal of a twice-superseded lease: err = %v, want ErrLeaseLost", err)
	}
}

// failing fails every operation while on is set.
type failing struct {
	storage.Storage
	on atomic.Bool
}

var errOutage = errors.New("storage outage")

func (f *failing) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) error {
	if f.on.Load() {
		return errOutage
	}
	return f.Storage.Put(ctx, name, r, opts)
}

func (f *failing) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if f.on.Load() {
		return nil, errOutage
	}
	return f.Storage.Get(ctx, name)
}

func (f *failing) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if f.on.Load() {
		return nil, errOutage
	}
	return f.Storage.List(ctx, prefix)
}

func TestLeaseLostWhenRenewalFailsUntilExpiry(t *testing.T) {
	ctx := context.Background()
	s := &failing{Storage: storage.NewMem()}
	clock := newFakeClock()
	l := mustAcquire(t, s, LeaseOptions{Now: clock.Now}) // TTL 30 s: gives up 6 s before expiry
	s.on.Store(true)
	clock.Advance(10 * time.Second)
	if err := l.Renew(ctx); !errors.Is(err, errOutage) || errors.Is(err, ErrLeaseLost) {
		t.Fatalf("failed renewal well before expiry: err = %v, want the outage, not a loss", err)
	}
	if isClosed(l.Lost()) {
		t.Fatal("lease lost well before expiry")
	}
	clock.Advance(14 * time.Second)
	if err := l.Renew(ctx); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, errOutage) {
		t.Fatalf("failed renewal near expiry: err = %v, want ErrLeaseLost wrapping the outage", err)
	}
	if !isClosed(l.Lost()) {
		t.Fatal("Lost not closed")
	}
	s.on.Store(false)
	if err := l.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a lost lease renewed again: %v", err)
	}
}

// The background goroutine renews on its own and notices a takeover.
func TestLeaseBackgroundRenewal(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	const ttl = 300 * time.Millisecond
	// Expiry is judged on a fake clock that the test moves on; renewal is
	// paced by real timers. Each step moves the clock half a TTL and waits
	// (in real time, as long as a loaded machine needs) for a renewal made
	// at the new time. Two TTLs later, the lease must still be held.
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	l := mustAcquire(t, s, LeaseOptions{TTL: ttl, Now: clock})
	for range 4 {
		mu.Lock()
		now = now.Add(ttl / 2)
		target := now.Add(ttl)
		mu.Unlock()
		deadline := time.Now().Add(30 * time.Second)
		for {
			rec, err := getLease(ctx, s, l.Generation())
			if err == nil && !rec.Expires.Before(target) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no renewal in 30 s after the clock moved on (last record %+v, %v)", rec, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	mustBeHeld(t, s, LeaseOptions{TTL: ttl, Now: clock}) // without renewal it would have expired

	other := leaseRecord{Token: "other", Host: "elsewhere", PID: 4242, Acquired: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := putLease(ctx, s, l.Generation()+1, other, storage.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("background renewal did not notice the takeover")
	}
	if err := l.Err(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "elsewhere") {
		t.Fatalf("Err = %v, want ErrLeaseLost naming the new holder", err)
	}
}

// A live process on this machine holds the lease until it stops.
func TestLeaseOfLiveProcessOnThisMachineHeld(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no signal 0 probe on windows")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	live := self()
	live.Token, live.Owner, live.PID, live.Start = "live", "other query", cmd.Process.Pid, 0
	live.Acquired, live.Expires = time.Now(), time.Now().Add(time.Hour)
	s := storage.NewMem()
	putRecord(t, s, 1, live)
	held := mustBeHeld(t, s, LeaseOptions{})
	want := "pid " + strconv.Itoa(cmd.Process.Pid) + " is alive on this machine: stop that process"
	if !held.SameMachine || !strings.Contains(held.Error(), want) {
		t.Fatalf("message lacks %q:\n%v", want, held)
	}
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("no signal 0 probe on windows")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.ProcessState.Pid()
}

func TestLeaseOfDeadProcessTakenOverAtOnce(t *testing.T) {
	pid := deadPID(t)
	now := time.Now()
	dead := self()
	dead.Token, dead.Owner, dead.PID, dead.Start = "dead", "crashed query", pid, 0
	dead.Acquired, dead.Expires = now.Add(-time.Minute), now.Add(time.Hour)

	s := storage.NewMem()
	putRecord(t, s, 7, dead)
	l := mustAcquire(t, s, LeaseOptions{})
	if l.Generation() != 8 {
		t.Fatalf("takeover made generation %d, want 8", l.Generation())
	}

	// The same dead pid on another host proves nothing: wait for expiry.
	elsewhere := dead
	elsewhere.Host = "another-" + dead.Host
	s = storage.NewMem()
	putRecord(t, s, 1, elsewhere)
	if held := mustBeHeld(t, s, LeaseOptions{}); held.SameMachine || !strings.Contains(held.Error(), "wait until the lease expires") {
		t.Fatalf("held by another machine: %v", held)
	}
	// Nor does it in another boot of this host.
	s = storage.NewMem()
	otherBoot := dead
	otherBoot.BootID += "-previous-boot"
	putRecord(t, s, 1, otherBoot)
	mustBeHeld(t, s, LeaseOptions{})
}

func TestLeaseOfReusedPIDTakenOver(t *testing.T) {
	me := self()
	if me.Start == 0 {
		t.Skip("process start times are not readable here")
	}
	reused := me // our pid, but recorded for a process that started earlier
	reused.Token, reused.Start = "old", me.Start-1
	reused.Acquired, reused.Expires = time.Now(), time.Now().Add(time.Hour)
	s := storage.NewMem()
	putRecord(t, s, 1, reused)
	mustAcquire(t, s, LeaseOptions{})
}

func TestLeaseConcurrentTakeover(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		s := storage.NewMem()
		stale := leaseRecord{Token: "gone", Host: "elsewhere", PID: 1, Released: true, Acquired: time.Now(), Expires: time.Now().Add(time.Hour)}
		putRecord(t, s, 1, stale)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			won   = make(chan *Lease, 4)
			held  atomic.Int32
		)
		for range 4 {
			wg.Go(func() {
				<-start
				l, err := AcquireLease(ctx, s, LeaseOptions{})
				switch {
				case err == nil:
					won <- l
				case errors.Is(err, ErrLeaseHeld):
					held.Add(1)
				default:
					t.Errorf("round %d: AcquireLease: %v", round, err)
				}
			})
		}
		close(start)
		wg.Wait()
		close(won)
		var winners []*Lease
		for l := range won {
			winners = append(winners, l)
		}
		if len(winners) != 1 || held.Load() != 3 {
			t.Fatalf("round %d: %d winners, %d refused; want 1 and 3", round, len(winners), held.Load())
		}
		if winners[0].Generation() != 2 {
			t.Fatalf("round %d: winner has generation %d, want 2", round, winners[0].Generation())
		}
		winners[0].Close(ctx)
	}
}

func TestLeaseRefusesDamagedOrStrayObjects(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	storage.PutBytes(ctx, s, "_lease/1", []byte("not a lease"), storage.PutOptions{})
	_, err := AcquireLease(ctx, s, LeaseOptions{})
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != "_lease/1" || !strings.Contains(err.Error(), "delete _lease/1") {
		t.Fatalf("damaged lease: err = %v, want a CorruptError naming _lease/1 and the way out", err)
	}

	s = storage.NewMem()
	storage.PutBytes(ctx, s, "_lease/notes.txt", nil, storage.PutOptions{})
	if _, err := AcquireLease(ctx, s, LeaseOptions{}); err == nil || !strings.Contains(err.Error(), "_lease/notes.txt") {
		t.Fatalf("stray object: err = %v, want an error naming it", err)
	}
}

func TestLeaseOptionsValidate(t *testing.T) {
	for _, ttl := range []time.Duration{-time.Second, time.Microsecond} {
		if err := (LeaseOptions{TTL: ttl}).Validate(); err == nil {
			t.Errorf("TTL %v accepted", ttl)
		}
		if _, err := AcquireLease(context.Background(), storage.NewMem(), LeaseOptions{TTL: ttl}); err == nil {
			t.Errorf("AcquireLease with TTL %v succeeded", ttl)
		}
	}
	if err := (LeaseOptions{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

func TestDecodeLeaseRefusesBadPayloads(t *testing.T) {
	valid := `{"token":"ab","host":"h","pid":1,"acquired":"2025-01-01T00:00:00Z","expires":"2025-01-01T00:00:30Z"}`
	if _, err := decodeLease("_lease/3", frame.Encode(frame.KindLease, 1, []byte(valid))); err != nil {
		t.Fatalf("valid payload refused: %v", err)
	}
	for _, p := range []string{
		"", "null", "{}", "[1]", "not json", valid[:40], valid + "x",
		strings.Replace(valid, `"pid":1`, `"pid":-3`, 1),
		strings.Replace(valid, `"token":"ab"`, `"token":""`, 1),
		strings.Replace(valid, `"2025-01-01T00:00:30Z"`, `"soon"`, 1),
		strings.Replace(valid, `"2025-01-01T00:00:30Z"`, `"0001-01-01T00:00:00Z"`, 1),
		strings.Replace(valid, `"2025-01-01T00:00:30Z"`, `"0000-01-01T00:00:00+01:00"`, 1),
		strings.Replace(valid, `"pid":1`, `"pid":1e99`, 1),
	} {
		_, err := decodeLease("_lease/3", frame.Encode(frame.KindLease, 1, []byte(p)))
		var ce *storage.CorruptError
		if !errors.As(err, &ce) || ce.Object != "_lease/3" {
			t.Errorf("payload %q: err = %v, want a CorruptError naming _lease/3", p, err)
		}
	}
	if _, err := decodeLease("_lease/3", frame.Encode(frame.KindLease, 2, []byte(valid))); !errors.Is(err, storage.ErrFormatVersion) {
		t.Errorf("version 2: err = %v, want ErrFormatVersion", err)
	}
	if _, err := decodeLease("_lease/3", frame.Encode(frame.KindLogEntry, 1, []byte(valid))); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("log entry read as a lease: err = %v, want ErrCorrupt", err)
	}
}

func normalized(r leaseRecord) leaseRecord {
	r.Acquired, r.Expires = r.Acquired.UTC(), r.Expires.UTC()
	return r
}

func FuzzDecodeLease(f *testing.F) {
	rec := leaseRecord{Token: "0123abcd", Owner: "query clicks", Host: "worker-1", BootID: "b", PIDNS: "pid:[4026531836]",
		PID: 4242, Start: 1234567, Acquired: time.Unix(1700000000, 5), Expires: time.Unix(1700000030, 0)}
	enc, err := encodeLease(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	payload, _, _ := frame.Decode(enc, "seed", frame.KindLease, 1)
	f.Add(payload)
	f.Add([]byte(`{"token":"x","pid":1,"acquired":"2025-01-01T00:00:00Z","expires":"9999-12-31T23:59:59+01:00","released":true}`))
	f.Add([]byte("{}"))
	f.Add([]byte(frame.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As a whole object, and as the payload of a well-framed one.
		for _, obj := range [][]byte{data, frame.Encode(frame.KindLease, 1, data)} {
			r, err := decodeLease("_lease/7", obj)
			if err != nil {
				var ce *storage.CorruptError
				if errors.As(err, &ce) && ce.Object != "_lease/7" {
					t.Fatalf("CorruptError names %q", ce.Object)
				}
				if ce == nil && !errors.Is(err, storage.ErrFormatVersion) {
					t.Fatalf("error is neither corruption nor version: %v", err)
				}
				continue
			}
			// Whatever decodes can be written back and reads the same.
			again, err := encodeLease(r)
			if err != nil {
				t.Fatalf("decoded lease %+v does not encode: %v", r, err)
			}
			r2, err := decodeLease("_lease/7", again)
			if err != nil {
				t.Fatalf("re-encoded lease does not decode: %v", err)
			}
			if normalized(r) != normalized(r2) {
				t.Fatalf("round trip changed the lease:\n%+v\n%+v", r, r2)
			}
		}
	})
}
