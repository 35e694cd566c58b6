package metalog

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

func entryFor(id int64) []byte {
	return []byte(fmt.Sprintf(`{"batch":%d,"offsets":{"clicks-0":%d}}`, id, id*100))
}

func mustOpen(t *testing.T, s storage.Storage, prefix string) *Log {
	t.Helper()
	l, err := Open(context.Background(), s, prefix)
	if err != nil {
		t.Fatalf("Open(%s): %v", prefix, err)
	}
	return l
}

func mustAdd(t *testing.T, l *Log, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if err := l.Add(context.Background(), id, entryFor(id)); err != nil {
			t.Fatalf("Add(%d): %v", id, err)
		}
	}
}

func span(lo, hi int64) []int64 {
	var out []int64
	for id := lo; id <= hi; id++ {
		out = append(out, id)
	}
	return out
}

func checkRange(t *testing.T, l *Log, earliest, latest int64) {
	t.Helper()
	if e, ok := l.Earliest(); !ok || e != earliest {
		t.Fatalf("Earliest = %d, %v; want %d", e, ok, earliest)
	}
	if la, ok := l.Latest(); !ok || la != latest {
		t.Fatalf("Latest = %d, %v; want %d", la, ok, latest)
	}
	for id := earliest; id <= latest; id++ {
		got, err := l.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("Get(%d): %v", id, err)
		}
		if !bytes.Equal(got, entryFor(id)) {
			t.Fatalf("Get(%d) = %q, want %q", id, got, entryFor(id))
		}
	}
}

func TestRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	l := mustOpen(t, s, "offsets")
	if _, ok := l.Latest(); ok {
		t.Fatal("empty log has a Latest")
	}
	if _, ok := l.Earliest(); ok {
		t.Fatal("empty log has an Earliest")
	}
	if _, _, err := l.LatestEntry(ctx); !errors.Is(err, ErrEmpty) {
		t.Fatalf("LatestEntry of an empty log: err = %v, want ErrEmpty", err)
	}
	mustAdd(t, l, span(0, 12)...) // past 9, where name order and ID order differ
	checkRange(t, l, 0, 12)

	if err := l.Purge(ctx, 4); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 4, 12)
	if _, err := l.Get(ctx, 3); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get of a purged entry: err = %v, want ErrNotFound", err)
	}
	if err := l.Purge(ctx, 2); err != nil { // below Earliest: nothing to do
		t.Fatal(err)
	}
	checkRange(t, l, 4, 12)

	id, entry, err := l.LatestEntry(ctx)
	if err != nil || id != 12 || !bytes.Equal(entry, entryFor(12)) {
		t.Fatalf("LatestEntry = %d, %q, %v", id, entry, err)
	}

	again := mustOpen(t, s, "offsets/") // a trailing slash is tolerated
	checkRange(t, again, 4, 12)
	mustAdd(t, again, 13)
	checkRange(t, mustOpen(t, s, "offsets"), 4, 13)

	// Entries are framed log entries, named by plain decimal IDs, that
	// record their name.
	raw, err := storage.GetBytes(ctx, s, "offsets/13")
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err := frame.Decode(raw, "offsets/13", frame.KindLogEntry, entryVersion, "offsets/13"); err != nil || !bytes.Equal(p, entryFor(13)) {
		t.Fatalf("offsets/13 is not a framed log entry holding the payload: %q, %v", p, err)
	}
}

func TestEmptyLogStartsAtAnyID(t *testing.T) {
	l := mustOpen(t, storage.NewMem(), "commits")
	mustAdd(t, l, 7, 8)
	checkRange(t, l, 7, 8)
}

func TestLogsAreIndependent(t *testing.T) {
	s := storage.NewMem()
	mustAdd(t, mustOpen(t, s, "offsets"), 0, 1, 2)
	mustAdd(t, mustOpen(t, s, "commits"), 0)
	mustAdd(t, mustOpen(t, s, "queries/q1/offsets"), 5)
	checkRange(t, mustOpen(t, s, "offsets"), 0, 2)
	checkRange(t, mustOpen(t, s, "commits"), 0, 0)
	checkRange(t, mustOpen(t, s, "queries/q1/offsets"), 5, 5)
}

func TestGapOnOpen(t *testing.T) {
	ctx := context.Background()
	s := namedMem(t)
	mustAdd(t, mustOpen(t, s, "offsets"), span(0, 14)...)
	for _, id := range []int64{5, 6, 7, 8, 9, 12} {
		if err := s.Delete(ctx, fmt.Sprintf("offsets/%d", id)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Open(ctx, s, "offsets")
	var gap *GapError
	if !errors.As(err, &gap) {
		t.Fatalf("Open of a log with a gap: err = %v, want a *GapError", err)
	}
	if want := []int64{5, 6, 7, 8, 9, 12}; !slices.Equal(gap.Missing, want) || gap.NumMissing != 6 {
		t.Errorf("Missing = %v (%d), want %v", gap.Missing, gap.NumMissing, want)
	}
	if gap.LastContiguous != 4 || !slices.Equal(gap.After, []int64{10, 11, 13, 14}) {
		t.Errorf("LastContiguous = %d, After = %v; want 4, [10 11 13 14]", gap.LastContiguous, gap.After)
	}
	msg := err.Error()
	for _, want := range []string{
		s.Location(), "missing entries 5-9, 12",
		"restore offsets/5 to offsets/9, offsets/12 from a backup",
		"delete offsets/10 to offsets/11, offsets/13 to offsets/14", "roll the query back to entry 4",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

// A stray object with a huge ID must not make Open allocate the gap.
func TestHugeGapIsBounded(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	mustAdd(t, mustOpen(t, s, "offsets"), 0)
	if err := frame.PutBytes(ctx, s, "offsets/1000000000000000", frame.KindLogEntry, 1, nil, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, s, "offsets")
	var gap *GapError
	if !errors.As(err, &gap) {
		t.Fatalf("err = %v, want a *GapError", err)
	}
	if len(gap.Missing) != maxListedMissing || gap.NumMissing != 1e15-1 || gap.Missing[0] != 1 {
		t.Fatalf("Missing has %d IDs from %d, NumMissing %d", len(gap.Missing), gap.Missing[0], gap.NumMissing)
	}
	if !strings.Contains(err.Error(), "entries 1-999999999999999") {
		t.Fatalf("message does not give the whole missing range: %v", err)
	}
}

func TestOpenRefusesStrayObjects(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"offsets/abc", "offsets/05", "offsets/+5", "offsets/-1", "offsets/5/x", "offsets/99999999999999999999", "offsets/5.crc"} {
		s := storage.NewMem()
		if err := storage.PutBytes(ctx, s, name, []byte("x"), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, s, "offsets")
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Open with stray object %s: err = %v, want an error naming it", name, err)
		}
	}
}

func TestOpenRefusesBadPrefix(t *testing.T) {
	for _, prefix := range []string{"", "_lease", "a//b", "../x"} {
		if _, err := Open(context.Background(), storage.NewMem(), prefix); err == nil {
			t.Errorf("Open(%q) succeeded", prefix)
		}
	}
}

func TestSecondWriter(t *testing.T) {
	ctx := context.Background()
	s := namedMem(t)
	first := mustOpen(t, s, "offsets")
	mustAdd(t, first, span(0, 4)...)
	second := mustOpen(t, s, "offsets")

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, l := range []*Log{first, second} {
		wg.Go(func() { errs[i] = l.Add(ctx, 5, []byte(fmt.Sprintf("writer %d", i))) })
	}
	wg.Wait()
	winner, loser := 0, 1
	if errs[0] != nil {
		winner, loser = 1, 0
	}
	if errs[winner] != nil {
		t.Fatalf("both Adds failed: %v; %v", errs[0], errs[1])
	}
	err := errs[loser]
	if !errors.Is(err, ErrConcurrentWriter) || !errors.Is(err, storage.ErrExists) {
		t.Fatalf("losing Add: err = %v, want ErrConcurrentWriter", err)
	}
	for _, want := range []string{"offsets/5", s.Location(), "stop the other process", "new checkpoint location"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	logs := []*Log{first, second}
	if id, _ := logs[loser].Latest(); id != 4 {
		t.Errorf("loser's Latest moved to %d after a failed Add", id)
	}
	got, err := logs[loser].Get(ctx, 5)
	if err != nil || string(got) != fmt.Sprintf("writer %d", winner) {
		t.Errorf("entry 5 = %q, %v; want the winner's", got, err)
	}
	// Even the very same bytes from a second writer are refused: the
	// entry was not this Log's to write.
	third := mustOpen(t, s, "offsets")
	if err := third.Add(ctx, 6, entryFor(6)); err != nil {
		t.Fatal(err)
	}
	if err := logs[winner].Add(ctx, 6, entryFor(6)); !errors.Is(err, ErrConcurrentWriter) {
		t.Fatalf("second writer adding identical bytes: err = %v, want ErrConcurrentWriter", err)
	}
}

func TestAddRefusesWrongID(t *testing.T) {
	ctx := context.Background()
	l := mustOpen(t, storage.NewMem(), "offsets")
	mustAdd(t, l, 0, 1, 2)
	for _, id := range []int64{5, 2, 0, -1} {
		err := l.Add(ctx, id, []byte("x"))
		if !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Add(%d): err = %v, want ErrOutOfOrder", id, err)
		}
		if id >= 0 && (err == nil || !strings.Contains(err.Error(), "expected ID 3")) {
			t.Errorf("Add(%d): message does not name the expected ID 3: %v", id, err)
		}
	}
	checkRange(t, l, 0, 2)
	if err := mustOpen(t, storage.NewMem(), "x").Add(ctx, -1, nil); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("Add(-1) to an empty log: err = %v, want ErrOutOfOrder", err)
	}
}

func TestGetMissingAndCorrupt(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	l := mustOpen(t, s, "offsets")
	mustAdd(t, l, 0, 1, 2)
	if _, err := l.Get(ctx, 9); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(9): err = %v, want ErrNotFound", err)
	}
	if _, err := l.Get(ctx, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(-1): err = %v, want ErrNotFound", err)
	}
	if err := s.Corrupt("offsets/1", func(b []byte) []byte { b[len(b)-25] ^= 1; return b }); err != nil {
		t.Fatal(err)
	}
	_, err := l.Get(ctx, 1)
	var ce *storage.CorruptError
	if !errors.As(err, &ce) || ce.Object != "offsets/1" {
		t.Fatalf("Get of a damaged entry: err = %v, want a *CorruptError naming offsets/1", err)
	}
	// A lease object copied into a log is the wrong kind.
	data, _ := encodeLease(leaseRecord{Token: "t"})
	storage.PutBytes(ctx, s, "offsets/3", data, storage.PutOptions{})
	if _, err := mustOpen(t, s, "offsets").Get(ctx, 3); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Get of a lease object as an entry: err = %v, want ErrCorrupt", err)
	}
}

func TestPurgeNeverDeletesLatest(t *testing.T) {
	ctx := context.Background()
	s := storage.NewMem()
	l := mustOpen(t, s, "commits")
	if err := l.Purge(ctx, 10); err != nil { // empty: nothing to do
		t.Fatal(err)
	}
	mustAdd(t, l, span(0, 4)...)
	if err := l.Purge(ctx, 100); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 4, 4)
	checkRange(t, mustOpen(t, s, "commits"), 4, 4)
	mustAdd(t, l, 5)
	checkRange(t, l, 4, 5)
}

// landThenFail stores a Put and then reports a failure, once, for one
// name: the timeout whose request reached the server.
type landThenFail struct {
	storage.Storage
	name string
	done bool
}

func (s *landThenFail) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) error {
	if err := s.Storage.Put(ctx, name, r, opts); err != nil || name != s.name || s.done {
		return err
	}
	s.done = true
	return errors.New("put timed out")
}

// A retried Add whose first attempt landed after all is not a second
// writer; one with other bytes is.
func TestRetryOfAddThatLanded(t *testing.T) {
	ctx := context.Background()
	for _, sameBytes := range []bool{true, false} {
		s := &landThenFail{Storage: storage.NewMem(), name: "offsets/3"}
		l := mustOpen(t, s, "offsets")
		mustAdd(t, l, 0, 1, 2)
		if err := l.Add(ctx, 3, entryFor(3)); err == nil {
			t.Fatal("Add did not report the injected failure")
		}
		if id, _ := l.Latest(); id != 2 {
			t.Fatalf("Latest = %d after a failed Add, want 2", id)
		}
		retry := entryFor(3)
		if !sameBytes {
			retry = []byte("something else")
		}
		err := l.Add(ctx, 3, retry)
		switch {
		case sameBytes && err != nil:
			t.Fatalf("retry with the same bytes: %v", err)
		case sameBytes:
			checkRange(t, l, 0, 3)
		case !errors.Is(err, ErrConcurrentWriter):
			t.Fatalf("retry with other bytes: err = %v, want ErrConcurrentWriter", err)
		}
	}
}

// Readers run while the writer adds and purges (go test -race).
func TestConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	l := mustOpen(t, storage.NewMem(), "offsets")
	mustAdd(t, l, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				earliest, _ := l.Earliest() // first: both only grow
				latest, _ := l.Latest()
				if earliest > latest {
					t.Errorf("Earliest %d > Latest %d", earliest, latest)
					return
				}
				got, err := l.Get(ctx, latest)
				if errors.Is(err, storage.ErrNotFound) {
					if now, _ := l.Earliest(); now > latest {
						continue // purged since Latest was read
					}
				}
				if err != nil || !bytes.Equal(got, entryFor(latest)) {
					t.Errorf("Get(latest %d) = %q, %v", latest, got, err)
					return
				}
			}
		})
	}
	for id := int64(1); id < 200; id++ {
		mustAdd(t, l, id)
		if err := l.Purge(ctx, id-3); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	checkRange(t, l, 196, 199)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		slog.SetDefault(slog.New(slog.DiscardHandler)) // lease takeovers and losses are logged
	}
	os.Exit(m.Run())
}

var memSeq atomic.Int64

// namedMem returns an empty in-memory storage with a location of its own
// (mem://TestName-N), for messages that must name it.
func namedMem(t *testing.T) *storage.Mem {
	return storage.OpenMem(fmt.Sprintf("%s-%d", t.Name(), memSeq.Add(1)))
}
