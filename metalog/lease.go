package metalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// LeasePrefix is where lease objects live: LeasePrefix/<generation>, one
// object per generation, the newest one current.
const LeasePrefix = "_lease"

// leaseVersion is the format version of lease objects.
const leaseVersion = 1

// DefaultLeaseTTL is the lease lifetime used when LeaseOptions.TTL is zero.
const DefaultLeaseTTL = 30 * time.Second

// maxAcquireAttempts bounds the retries of AcquireLease when the lease
// generations change under it (another process taking over at once).
const maxAcquireAttempts = 5

// Sentinel errors of the lease, matched with errors.Is.
var (
	// ErrLeaseHeld matches every *LeaseHeldError.
	ErrLeaseHeld = errors.New("metalog: checkpoint location is in use by another process")
	// ErrLeaseLost is what Lease.Err returns once the lease is lost: another
	// process took it over, or it could not be renewed before it expired.
	ErrLeaseLost = errors.New("metalog: lease lost")
	// ErrLeaseClosed is returned by Renew after Close.
	ErrLeaseClosed = errors.New("metalog: lease closed")
)

// LeaseOptions configure AcquireLease. The zero value is ready to use.
type LeaseOptions struct {
	// TTL is how long the lease stays valid without renewal; the holder
	// renews it every TTL/3. A holder that died on another machine blocks
	// the checkpoint location for up to TTL. Default DefaultLeaseTTL (30 s).
	// Flink's nearest setting is
	// high-availability.kubernetes.leader-election.lease-duration (15 s);
	// Spark has none.
	TTL time.Duration
	// Owner describes the holder in the messages other processes get, for
	// example "query clicks-per-minute". Default: the program name.
	Owner string
	// Now returns the current time. Default time.Now; tests set a fake
	// clock. Expiry is judged with it, renewal is paced by real timers.
	Now func() time.Time
	// Logger receives takeovers and losses of the lease. Default
	// slog.Default().
	Logger *slog.Logger
}

// Validate reports options that cannot work.
func (o LeaseOptions) Validate() error {
	if o.TTL < 0 {
		return fmt.Errorf("metalog: lease TTL %v is negative; use 0 for the default %v", o.TTL, DefaultLeaseTTL)
	}
	if o.TTL != 0 && o.TTL < 10*time.Millisecond {
		return fmt.Errorf("metalog: lease TTL %v is below the minimum of 10ms", o.TTL)
	}
	return nil
}

func (o LeaseOptions) withDefaults() LeaseOptions {
	if o.TTL == 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Owner == "" && len(os.Args) > 0 {
		o.Owner = filepath.Base(os.Args[0])
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// leaseRecord is the JSON payload of a lease object (format version 1).
type leaseRecord struct {
	// Token is random per acquisition: it tells two holders apart even
	// when host and pid are equal.
	Token string `json:"token"`
	Owner string `json:"owner,omitempty"`
	Host  string `json:"host"`
	// BootID and PIDNS (Linux) narrow "same host": a pid is only
	// meaningful in the boot and the pid namespace it was read in.
	BootID string `json:"boot_id,omitempty"`
	PIDNS  string `json:"pid_ns,omitempty"`
	PID    int    `json:"pid"`
	// Start is the process start time in clock ticks since boot (Linux),
	// so that a pid reused by an unrelated process is told apart.
	Start    uint64    `json:"start,omitempty"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
	Released bool      `json:"released,omitempty"`
}

func (r leaseRecord) holder() string {
	s := fmt.Sprintf("pid %d on host %s", r.PID, r.Host)
	if r.Owner != "" {
		s += fmt.Sprintf(" (%q)", r.Owner)
	}
	return s
}

func leaseObject(gen int64) string { return LeasePrefix + "/" + strconv.FormatInt(gen, 10) }

func encodeLease(r leaseRecord) ([]byte, error) {
	r.Acquired, r.Expires = r.Acquired.UTC(), r.Expires.UTC()
	p, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("metalog: encode lease: %w", err)
	}
	return frame.Encode(frame.KindLease, leaseVersion, p), nil
}

// decodeLease verifies a framed lease object and decodes its payload. Bad
// bytes of any kind give a *storage.CorruptError naming object (or
// storage.ErrFormatVersion for a newer format); it never panics.
func decodeLease(object string, data []byte) (leaseRecord, error) {
	payload, _, err := frame.Decode(data, object, frame.KindLease, leaseVersion)
	if err != nil {
		return leaseRecord{}, err
	}
	return decodeLeasePayload(object, payload)
}

func decodeLeasePayload(object string, payload []byte) (leaseRecord, error) {
	corrupt := func(reason string) (leaseRecord, error) {
		return leaseRecord{}, &storage.CorruptError{Object: object, Offset: -1, Reason: reason}
	}
	var r leaseRecord
	if err := json.Unmarshal(payload, &r); err != nil {
		return corrupt("lease payload is not valid JSON: " + err.Error())
	}
	switch {
	case r.Token == "":
		return corrupt("lease has no owner token")
	case r.PID < 0:
		return corrupt(fmt.Sprintf("lease has a negative pid %d", r.PID))
	case !validLeaseTime(r.Acquired):
		return corrupt(fmt.Sprintf("lease has a bad acquisition time %v", r.Acquired))
	case !validLeaseTime(r.Expires):
		return corrupt(fmt.Sprintf("lease has a bad expiry time %v", r.Expires))
	}
	return r, nil
}

// validLeaseTime accepts times that encodeLease can write back.
func validLeaseTime(t time.Time) bool {
	y := t.UTC().Year()
	return !t.IsZero() && y >= 1 && y <= 9999
}

func getLease(ctx context.Context, s storage.Storage, gen int64) (leaseRecord, error) {
	name := leaseObject(gen)
	data, err := storage.GetBytes(ctx, s, name)
	if err != nil {
		return leaseRecord{}, err
	}
	return decodeLease(name, data)
}

func putLease(ctx context.Context, s storage.Storage, gen int64, r leaseRecord, opts storage.PutOptions) error {
	data, err := encodeLease(r)
	if err != nil {
		return err
	}
	return storage.PutBytes(ctx, s, leaseObject(gen), data, opts)
}

// listGenerations returns the lease generations in ascending order. With
// strict, an object under LeasePrefix that is not a generation is an error;
// otherwise it is skipped.
func listGenerations(ctx context.Context, s storage.Storage, strict bool) ([]int64, error) {
	objs, err := s.List(ctx, LeasePrefix+"/")
	if err != nil {
		return nil, fmt.Errorf("metalog: list leases in %s: %w", s.Location(), err)
	}
	gens := make([]int64, 0, len(objs))
	for _, o := range objs {
		g, ok := parseID(strings.TrimPrefix(o.Name, LeasePrefix+"/"))
		if !ok {
			if strict {
				return nil, fmt.Errorf("metalog: object %s in %s is not a lease: names under %s/ must be decimal generations; move it elsewhere or delete it",
					o.Name, s.Location(), LeasePrefix)
			}
			continue
		}
		gens = append(gens, g)
	}
	slices.Sort(gens)
	return gens, nil
}

// staleness reports whether the lease r may be taken over at now by the
// process me, and why.
func staleness(r leaseRecord, me leaseRecord, now time.Time) (reason string, stale bool) {
	switch {
	case r.Released:
		return "released by its holder", true
	case !now.Before(r.Expires):
		return fmt.Sprintf("expired at %s", r.Expires.Format(time.RFC3339Nano)), true
	case !sameMachine(r, me) || r.PID <= 0:
		return "", false
	case r.PID == me.PID && r.Start == me.Start:
		return "", false // this very process holds it
	}
	switch state, start := processState(r.PID); {
	case state == procGone:
		return fmt.Sprintf("pid %d on this machine has exited", r.PID), true
	case state == procAlive && r.Start != 0 && start != 0 && start != r.Start:
		return fmt.Sprintf("pid %d on this machine is now another process (it started later)", r.PID), true
	}
	return "", false
}

// sameMachine reports whether a pid in a and one in b name processes in one
// pid namespace of one boot of one host.
func sameMachine(a, b leaseRecord) bool {
	return a.Host == b.Host && a.BootID == b.BootID && a.PIDNS == b.PIDNS
}

type procState int

const (
	procUnknown procState = iota
	procAlive
	procGone
)

var (
	selfOnce sync.Once
	selfRec  leaseRecord
)

// self describes this process: host, boot, pid namespace, pid, start time.
func self() leaseRecord {
	selfOnce.Do(func() {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown-host"
		}
		selfRec = leaseRecord{Host: host, PID: os.Getpid()}
		if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
			selfRec.BootID = strings.TrimSpace(string(b))
		}
		if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
			selfRec.PIDNS = ns
		}
		if _, start, ok := procStat(selfRec.PID); ok {
			selfRec.Start = start
		}
	})
	return selfRec
}

// procStat reads the state letter and start time (clock ticks since boot)
// of a process from /proc/<pid>/stat, where there is one.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses, so
	// count fields after the last ')'. Field 3 is the state, field 22 the
	// start time.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// processState reports whether pid is a live process on this machine and,
// where known, its start time.
func processState(pid int) (procState, uint64) {
	if st, start, ok := procStat(pid); ok {
		if st == 'Z' || st == 'X' { // exited, waiting to be reaped
			return procGone, 0
		}
		return procAlive, start
	}
	return signalZero(pid), 0
}

// LeaseHeldError reports a checkpoint location whose lease a live process
// holds. It matches ErrLeaseHeld.
type LeaseHeldError struct {
	// Location is the checkpoint location.
	Location string
	// Object is the lease object, such as "_lease/3".
	Object string
	// Owner, Host and PID describe the holder.
	Owner string
	Host  string
	PID   int
	// SameMachine is true when the holder runs on this machine, where its
	// pid was checked and found alive.
	SameMachine bool
	// Since is when the holder acquired the lease; Expires is when it
	// lapses unless renewed.
	Since, Expires time.Time

	thisProcess bool // the holder is the process that got the error
}

func (e *LeaseHeldError) Error() string {
	rec := leaseRecord{Owner: e.Owner, Host: e.Host, PID: e.PID}
	msg := fmt.Sprintf("metalog: checkpoint location %s is in use by another process: %s has held the lease %s since %s, valid until %s unless renewed. ",
		e.Location, rec.holder(), e.Object, e.Since.Format(time.RFC3339), e.Expires.Format(time.RFC3339))
	if e.thisProcess {
		return msg + "It is this very process: a second AcquireLease for one location in one process; Close the first Lease, or share it"
	}
	if e.SameMachine {
		return msg + fmt.Sprintf("pid %d is alive on this machine: stop that process and start again (if that pid now belongs to an unrelated program, wait until the lease expires at %s)",
			e.PID, e.Expires.Format(time.RFC3339))
	}
	return msg + fmt.Sprintf("Stop that process; if it died on another machine, wait until the lease expires at %s and start again",
		e.Expires.Format(time.RFC3339))
}

// Is reports whether target is ErrLeaseHeld.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

func heldError(s storage.Storage, gen int64, r, me leaseRecord) *LeaseHeldError {
	return &LeaseHeldError{
		Location: s.Location(), Object: leaseObject(gen),
		Owner: r.Owner, Host: r.Host, PID: r.PID,
		SameMachine: sameMachine(r, me) && r.PID > 0,
		Since:       r.Acquired, Expires: r.Expires,
		thisProcess: sameMachine(r, me) && r.PID == me.PID && r.Start == me.Start,
	}
}

// Lease is this process's claim to be the one writer of a checkpoint
// location. While it is held, a goroutine renews it every TTL/3. Safe for
// concurrent use.
type Lease struct {
	s      storage.Storage
	opts   LeaseOptions
	gen    int64
	object string

	lost chan struct{} // closed when the lease is lost
	stop context.CancelFunc
	done chan struct{} // closed when the renewal goroutine has returned

	// rmu serializes Renew and Close and is held across their storage
	// I/O. The fields below change only under rmu and mu both, so holders
	// of either may read them; Expires and Err take only mu and never wait
	// for I/O.
	rmu    sync.Mutex
	mu     sync.Mutex
	rec    leaseRecord
	err    error // why the lease was lost
	closed bool
}

// AcquireLease takes the lease of the checkpoint location s, or returns a
// *LeaseHeldError (matching ErrLeaseHeld) naming the live holder.
//
// It reads the newest lease generation. If there is none, or it is stale,
// it creates the next generation with a conditional create, so that of
// several processes taking over at once exactly one wins and the others
// get a *LeaseHeldError naming the winner. A lease is stale when its
// holder released it, when it expired (by this process's clock), or when
// its holder ran on this machine and its pid has exited, so a restart after
// a crash on one machine does not wait for the expiry. After a takeover the
// older generations are deleted, oldest first.
//
// The lease is renewed in the background until Close. Watch Lost: once it
// is closed the lease is gone and the process must stop writing.
func AcquireLease(ctx context.Context, s storage.Storage, opts LeaseOptions) (*Lease, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	me := self()
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	for attempt := 1; attempt <= maxAcquireAttempts; attempt++ {
		gens, err := listGenerations(ctx, s, true)
		if err != nil {
			return nil, err
		}
		next, why := int64(1), ""
		if n := len(gens); n > 0 {
			top := gens[n-1]
			cur, err := getLease(ctx, s, top)
			if errors.Is(err, storage.ErrNotFound) {
				continue // deleted since listed: a newer generation exists
			}
			if err != nil {
				return nil, fmt.Errorf("metalog: acquire lease in %s: read %s: %w (if no process uses this checkpoint location, delete %s and start again)",
					s.Location(), leaseObject(top), err, leaseObject(top))
			}
			reason, stale := staleness(cur, me, opts.Now())
			if !stale {
				return nil, heldError(s, top, cur, me)
			}
			next, why = top+1, fmt.Sprintf("took over the lease of %s: %s", cur.holder(), reason)
		}
		now := opts.Now()
		rec := me
		rec.Token, rec.Owner = token, opts.Owner
		rec.Acquired, rec.Expires = now, now.Add(opts.TTL)
		err = putLease(ctx, s, next, rec, storage.PutOptions{IfAbsent: true})
		if errors.Is(err, storage.ErrExists) {
			// Another process created this generation first.
			if other, gerr := getLease(ctx, s, next); gerr == nil {
				if _, stale := staleness(other, me, opts.Now()); !stale {
					return nil, heldError(s, next, other, me)
				}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("metalog: acquire lease in %s: create %s: %w", s.Location(), leaseObject(next), err)
		}
		l := &Lease{
			s: s, opts: opts, gen: next, object: leaseObject(next), rec: rec,
			lost: make(chan struct{}), done: make(chan struct{}),
		}
		if why != "" {
			opts.Logger.Info("metalog: "+why, "location", s.Location(), "lease", l.object)
		}
		for _, g := range gens { // oldest first; the newest always stays
			if err := s.Delete(ctx, leaseObject(g)); err != nil {
				opts.Logger.Warn("metalog: could not delete an old lease generation", "location", s.Location(), "object", leaseObject(g), "err", err)
				break
			}
		}
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		l.stop = stop
		go l.renewLoop(rctx)
		return l, nil
	}
	return nil, fmt.Errorf("metalog: acquire lease in %s: gave up after %d attempts: the lease generations under %s/ kept changing; another process is starting on this location at the same time",
		s.Location(), maxAcquireAttempts, LeasePrefix)
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("metalog: lease token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Generation returns the lease generation this process holds.
func (l *Lease) Generation() int64 { return l.gen }

// Object returns the name of the lease object, such as "_lease/3".
func (l *Lease) Object() string { return l.object }

// Expires returns when the lease lapses unless renewed.
func (l *Lease) Expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Expires
}

// Lost returns a channel that is closed when the lease is lost: another
// process took it over, or renewal failed until it was about to expire.
// Close does not close it.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err returns nil while the lease is held (and after Close), and an error
// matching ErrLeaseLost that says why once it is lost.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// safety is how long before expiry a holder that cannot renew gives the
// lease up, leaving room for clock drift and a slow final renewal.
func (l *Lease) safety() time.Duration { return l.opts.TTL / 5 }

// Renew checks that no other process has taken the lease over and extends
// it to TTL from now. The background goroutine calls it every TTL/3; call
// it yourself to check the lease before an important write.
//
// It returns an error matching ErrLeaseLost, and closes Lost, if a newer
// generation exists or if renewal fails when the lease is within TTL/5 of
// its expiry; other errors are transient and leave the lease held.
func (l *Lease) Renew(ctx context.Context) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return fmt.Errorf("metalog: renew lease %s in %s: %w", l.object, l.s.Location(), ErrLeaseClosed)
	}
	err := l.renewHeld(ctx)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrLeaseLost) {
		deadline := l.rec.Expires.Add(-l.safety())
		if l.opts.Now().Before(deadline) {
			return fmt.Errorf("metalog: renew lease %s in %s (it expires at %s): %w", l.object, l.s.Location(), l.rec.Expires.Format(time.RFC3339), err)
		}
		err = fmt.Errorf("%w: could not renew %s in %s before it expires at %s, after which another process may take it over: %w",
			ErrLeaseLost, l.object, l.s.Location(), l.rec.Expires.Format(time.RFC3339), err)
	}
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
	close(l.lost)
	l.opts.Logger.Error("metalog: lease lost; this process must stop writing to the checkpoint location", "location", l.s.Location(), "err", err)
	return err
}

// renewHeld does one renewal; the caller holds rmu.
func (l *Lease) renewHeld(ctx context.Context) error {
	// A Get of the next generation sees a takeover at once even where a
	// List lags; the List catches a takeover whose generation was since
	// deleted by a later takeover (which deletes older ones, oldest
	// first, never the newest).
	next := leaseObject(l.gen + 1)
	switch rec, err := getLease(ctx, l.s, l.gen+1); {
	case err == nil:
		return fmt.Errorf("%w: %s took over checkpoint location %s (%s) at %s", ErrLeaseLost, rec.holder(), l.s.Location(), next, rec.Acquired.Format(time.RFC3339))
	case errors.Is(err, storage.ErrCorrupt):
		return fmt.Errorf("%w: another process created %s in %s (it is damaged: %v)", ErrLeaseLost, next, l.s.Location(), err)
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	gens, err := listGenerations(ctx, l.s, false)
	if err != nil {
		return err
	}
	if n := len(gens); n > 0 && gens[n-1] > l.gen {
		return fmt.Errorf("%w: another process took over checkpoint location %s: %s exists", ErrLeaseLost, l.s.Location(), leaseObject(gens[n-1]))
	}
	rec := l.rec
	rec.Expires = l.opts.Now().Add(l.opts.TTL)
	if err := putLease(ctx, l.s, l.gen, rec, storage.PutOptions{}); err != nil {
		return err
	}
	l.mu.Lock()
	l.rec = rec
	l.mu.Unlock()
	return nil
}

func (l *Lease) renewLoop(ctx context.Context) {
	defer close(l.done)
	every, retry := l.opts.TTL/3, max(l.opts.TTL/10, time.Millisecond)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			t.Reset(every)
		case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrLeaseClosed), ctx.Err() != nil:
			return
		default:
			l.opts.Logger.Warn("metalog: lease renewal failed; retrying", "location", l.s.Location(), "err", err)
			t.Reset(retry)
		}
	}
}

// Close stops renewing and marks the lease released, so the next process
// takes over at once instead of waiting for the expiry. The lease object
// stays (the newest generation must always exist, so that a superseded
// holder can tell it lost). After a loss, Close only stops renewing.
// Close is idempotent; it returns an error only if writing the release
// failed, in which case the lease lapses at its expiry.
func (l *Lease) Close(ctx context.Context) error {
	l.stop()
	<-l.done
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closed {
		return nil
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if l.err != nil {
		return nil
	}
	rec := l.rec
	rec.Released = true
	if err := putLease(ctx, l.s, l.gen, rec, storage.PutOptions{}); err != nil {
		return fmt.Errorf("metalog: release lease %s in %s (it lapses at %s): %w", l.object, l.s.Location(), l.rec.Expires.Format(time.RFC3339), err)
	}
	l.mu.Lock()
	l.rec = rec
	l.mu.Unlock()
	return nil
}
