package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

// Run runs the conformance suite against storages made by newStorage.
func Run(t *testing.T, newStorage func(t *testing.T) storage.Storage) {
	ctx := context.Background()
	t.Run("PutGetRoundTrip", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "a/b/c", []byte("hello"), storage.PutOptions{})
		if got := mustGet(t, s, "a/b/c"); string(got) != "hello" {
			t.Fatalf("Get = %q, want hello", got)
		}
		mustPut(t, s, "empty", nil, storage.PutOptions{})
		if got := mustGet(t, s, "empty"); len(got) != 0 {
			t.Fatalf("Get(empty) = %q, want no bytes", got)
		}
	})
	t.Run("PutReplaces", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "x", []byte("one"), storage.PutOptions{})
		mustPut(t, s, "x", []byte("two"), storage.PutOptions{})
		if got := mustGet(t, s, "x"); string(got) != "two" {
			t.Fatalf("Get = %q, want two", got)
		}
	})
	t.Run("IfAbsent", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "log/1", []byte("first"), storage.PutOptions{IfAbsent: true})
		err := storage.PutBytes(ctx, s, "log/1", []byte("second"), storage.PutOptions{IfAbsent: true})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("second IfAbsent Put: err = %v, want ErrExists", err)
		}
		if got := mustGet(t, s, "log/1"); string(got) != "first" {
			t.Fatalf("after refused Put, Get = %q, want first", got)
		}
	})
	t.Run("IfAbsentConcurrentOneWins", func(t *testing.T) {
		s := newStorage(t)
		const writers = 8
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = storage.PutBytes(ctx, s, "race", []byte(fmt.Sprint(i)), storage.PutOptions{IfAbsent: true})
			}()
		}
		wg.Wait()
		winners := 0
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				winner = i
			case !errors.Is(err, storage.ErrExists):
				t.Fatalf("writer %d: unexpected error %v", i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("%d IfAbsent writers succeeded, want exactly 1", winners)
		}
		if got := mustGet(t, s, "race"); string(got) != fmt.Sprint(winner) {
			t.Fatalf("Get = %q, want the winner's %d", got, winner)
		}
	})
	t.Run("GetMissing", func(t *testing.T) {
		s := newStorage(t)
		_, err := s.Get(ctx, "nope")
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
		}
		mustPut(t, s, "dir/obj", []byte("x"), storage.PutOptions{})
		if _, err := s.Get(ctx, "dir"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get of a name prefix: err = %v, want ErrNotFound", err)
		}
	})
	t.Run("ListPrefixSorted", func(t *testing.T) {
		s := newStorage(t)
		names := []string{"offsets/10", "offsets/2", "offsets/1", "commits/1", "offsetsX", "state/0/0/1.delta"}
		for _, n := range names {
			mustPut(t, s, n, []byte(n), storage.PutOptions{})
		}
		check := func(prefix string, want ...string) {
			t.Helper()
			got, err := s.List(ctx, prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			var gotNames []string
			for _, o := range got {
				gotNames = append(gotNames, o.Name)
				if o.Size != int64(len(o.Name)) {
					t.Errorf("List(%q): %s has size %d, want %d", prefix, o.Name, o.Size, len(o.Name))
				}
			}
			if fmt.Sprint(gotNames) != fmt.Sprint(want) {
				t.Fatalf("List(%q) = %v, want %v", prefix, gotNames, want)
			}
		}
		check("offsets/", "offsets/1", "offsets/10", "offsets/2")
		check("offsets", "offsets/1", "offsets/10", "offsets/2", "offsetsX")
		check("state/0/", "state/0/0/1.delta")
		check("", "commits/1", "offsets/1", "offsets/10", "offsets/2", "offsetsX", "state/0/0/1.delta")
		check("missing/")
	})
	t.Run("DeleteIdempotent", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "a/1", []byte("x"), storage.PutOptions{})
		for range 2 {
			if err := s.Delete(ctx, "a/1"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}
		if _, err := s.Get(ctx, "a/1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
		}
		if got, _ := s.List(ctx, "a/"); len(got) != 0 {
			t.Fatalf("List after Delete = %v, want nothing", got)
		}
		mustPut(t, s, "a/1", []byte("y"), storage.PutOptions{IfAbsent: true})
	})
	t.Run("InvalidNames", func(t *testing.T) {
		s := newStorage(t)
		for _, n := range []string{"", "/abs", "a//b", "a/../b", "a/./b", "trail/", ".cairn-tmp/x", "a\\b"} {
			if err := storage.PutBytes(ctx, s, n, []byte("x"), storage.PutOptions{}); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("Put(%q): err = %v, want ErrInvalidName", n, err)
			}
		}
	})
	t.Run("PrefixCannotEscape", func(t *testing.T) {
		s := newStorage(t)
		for _, p := range []string{"../", "..", "a/../", "/etc/", "a//"} {
			if _, err := s.List(ctx, p); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("List(%q): err = %v, want ErrInvalidName", p, err)
			}
		}
		if _, err := s.Get(ctx, "../x"); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("Get(../x): err = %v, want ErrInvalidName", err)
		}
		if err := s.Delete(ctx, ""); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("Delete(\"\"): err = %v, want ErrInvalidName", err)
		}
	})
	t.Run("GetBelowAnObject", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "offsets/5", []byte("x"), storage.PutOptions{})
		if _, err := s.Get(ctx, "offsets/5/x"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get(offsets/5/x): err = %v, want ErrNotFound", err)
		}
		if got, err := s.List(ctx, "offsets/5/"); err != nil || len(got) != 0 {
			t.Fatalf("List(offsets/5/) = %v, %v; want nothing", got, err)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		s := newStorage(t)
		mustPut(t, s, "a", []byte("x"), storage.PutOptions{})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := storage.PutBytes(ctx, s, "b", []byte("x"), storage.PutOptions{}); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Put after Close: err = %v, want ErrClosed", err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Get after Close: err = %v, want ErrClosed", err)
		}
		if _, err := s.List(ctx, ""); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("List after Close: err = %v, want ErrClosed", err)
		}
		if err := s.Delete(ctx, "a"); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Delete after Close: err = %v, want ErrClosed", err)
		}
	})
	t.Run("FailedReaderStoresNothing", func(t *testing.T) {
		s := newStorage(t)
		boom := errors.New("reader broke")
		r := io.MultiReader(bytes.NewReader(make([]byte, 100_000)), errReader{boom})
		if err := s.Put(ctx, "partial", r, storage.PutOptions{}); !errors.Is(err, boom) {
			t.Fatalf("Put with failing reader: err = %v, want %v", err, boom)
		}
		if _, err := s.Get(ctx, "partial"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after failed Put: err = %v, want ErrNotFound", err)
		}
		if got, _ := s.List(ctx, ""); len(got) != 0 {
			t.Fatalf("List after failed Put = %v, want nothing (no temporary files)", got)
		}
	})
	t.Run("LargeStreamedObject", func(t *testing.T) {
		s := newStorage(t)
		data := make([]byte, 9<<20+17)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		err := storage.PutStream(ctx, s, "big", storage.PutOptions{}, func(w io.Writer) error {
			for off := 0; off < len(data); off += 1000 {
				if _, err := w.Write(data[off:min(off+1000, len(data))]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("PutStream: %v", err)
		}
		if got := mustGet(t, s, "big"); !bytes.Equal(got, data) {
			t.Fatalf("Get(big) returned %d bytes that differ from the %d written", len(got), len(data))
		}
	})
	t.Run("PutStreamWriterError", func(t *testing.T) {
		s := newStorage(t)
		boom := errors.New("encoder failed")
		err := storage.PutStream(ctx, s, "x", storage.PutOptions{}, func(w io.Writer) error {
			w.Write([]byte("partial"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("PutStream: err = %v, want %v", err, boom)
		}
		if _, err := s.Get(ctx, "x"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after failed PutStream: err = %v, want ErrNotFound", err)
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		s := newStorage(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := storage.PutBytes(cctx, s, "x", []byte("x"), storage.PutOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with cancelled context: err = %v, want context.Canceled", err)
		}
		if _, err := s.Get(ctx, "x"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after cancelled Put: err = %v, want ErrNotFound", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func mustPut(t *testing.T, s storage.Storage, name string, data []byte, opts storage.PutOptions) {
	t.Helper()
	if err := storage.PutBytes(context.Background(), s, name, data, opts); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func mustGet(t *testing.T, s storage.Storage, name string) []byte {
	t.Helper()
	data, err := storage.GetBytes(context.Background(), s, name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return data
}
