package faulty_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
)

func TestFailAtFailsOnlyTheKthMatch(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(storage.NewMem())
	f.FailAt(2, faulty.Writes)
	put := func(name string) error {
		return storage.PutBytes(ctx, f, name, []byte(name), storage.PutOptions{})
	}
	if err := put("a"); err != nil {
		t.Fatalf("first write failed: %v", err)
	}
	if _, err := f.List(ctx, ""); err != nil { // reads do not count against Writes
		t.Fatal(err)
	}
	if err := put("b"); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("second write: err = %v, want ErrInjected", err)
	}
	if _, err := f.Get(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed Put left an object: err = %v", err)
	}
	if err := put("c"); err != nil {
		t.Fatalf("third write failed: %v", err)
	}
	if f.Ops() != 5 {
		t.Fatalf("Ops = %d, want 5", f.Ops())
	}
}

func TestCrashAtStopsEverythingAfter(t *testing.T) {
	ctx := context.Background()
	for _, lands := range []bool{false, true} {
		inner := storage.NewMem()
		f := faulty.New(inner)
		f.PutLandsOnCrash = lands
		f.CrashAt(2, nil)
		storage.PutBytes(ctx, f, "a", []byte("a"), storage.PutOptions{})
		err := storage.PutStream(ctx, f, "b", storage.PutOptions{}, func(w io.Writer) error {
			_, err := w.Write([]byte(strings.Repeat("b", 1<<20)))
			return err
		})
		if !errors.Is(err, faulty.ErrCrashed) {
			t.Fatalf("put at crash point: err = %v, want ErrCrashed", err)
		}
		if _, err := f.Get(ctx, "a"); !errors.Is(err, faulty.ErrCrashed) {
			t.Fatalf("get after crash: err = %v, want ErrCrashed", err)
		}
		got, err := storage.GetBytes(ctx, inner, "b")
		switch {
		case lands && (err != nil || len(got) != 1<<20):
			t.Fatalf("PutLandsOnCrash: b = %d bytes, %v; want whole 1 MiB", len(got), err)
		case !lands && !errors.Is(err, storage.ErrNotFound):
			t.Fatalf("crash before landing: b = %d bytes, %v; want absent", len(got), err)
		}
	}
}

func TestStatsCountOperationsAndBytes(t *testing.T) {
	ctx := context.Background()
	s := faulty.New(storage.NewMem())
	if err := storage.PutBytes(ctx, s, "a", []byte("hello"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.GetBytes(ctx, s, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	want := faulty.Stats{Puts: 1, Gets: 1, Lists: 1, Deletes: 1, PutBytes: 5, GetBytes: 5}
	if got := s.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}
