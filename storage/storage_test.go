package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/faulty"
	"github.com/cairn-data/cairn/storage/storagetest"
)

func TestConformanceLocal(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s, err := storage.OpenLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformanceMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewMem() })
}

func TestConformanceFaultyWithoutFaults(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return faulty.New(storage.NewMem()) })
}

func TestOpenURLs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, loc := range []string{dir, "file://" + dir, filepath.Join(dir, "sub", "..")} {
		s, err := storage.Open(ctx, loc)
		if err != nil {
			t.Fatalf("Open(%q): %v", loc, err)
		}
		if _, ok := s.(*storage.Local); !ok {
			t.Fatalf("Open(%q) = %T, want *storage.Local", loc, s)
		}
	}
	a, err := storage.Open(ctx, "mem://shared-test")
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, a, "k", []byte("v"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := storage.Open(ctx, "mem://shared-test")
	if got, err := storage.GetBytes(ctx, b, "k"); err != nil || string(got) != "v" {
		t.Fatalf("second Open of mem://shared-test: Get = %q, %v; want v", got, err)
	}
	for _, bad := range []string{"", "nosuch://x", "file://otherhost/x", "mem://"} {
		if _, err := storage.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", bad)
		}
	}
}

func TestLocalHidesTemporaryFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A writer that died mid-Put leaves a temporary file behind.
	if err := os.WriteFile(filepath.Join(dir, ".cairn-tmp", "put-123"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, s, "a", []byte("x"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("List = %v, want only a", got)
	}
}

func TestCorruptErrorMatches(t *testing.T) {
	err := error(&storage.CorruptError{Object: "state/0/0/3.delta", Offset: 12, Reason: "checksum mismatch"})
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatal("CorruptError does not match ErrCorrupt")
	}
	want := "storage: object state/0/0/3.delta is corrupt at byte 12: checksum mismatch"
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestOpenExistingRefusesAMissingDirectory(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "typo")
	for _, loc := range []string{missing, "file://" + missing} {
		if _, err := storage.OpenExisting(ctx, loc); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("OpenExisting(%q): err = %v, want ErrNotFound", loc, err)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("OpenExisting created the missing directory")
	}
	if _, err := storage.OpenExisting(ctx, t.TempDir()); err != nil {
		t.Fatalf("OpenExisting of an existing directory: %v", err)
	}
}

// TestOpenUnlinkedBackendNamesItsPackage checks that an s3:// location in
// a program that did not import storage/s3 says which import is missing.
func TestOpenUnlinkedBackendNamesItsPackage(t *testing.T) {
	_, err := storage.Open(context.Background(), "s3://bucket/prefix?endpoint=localhost:9000")
	if err == nil || !strings.Contains(err.Error(), `"github.com/cairn-data/cairn/storage/s3"`) {
		t.Fatalf("Open(s3://...) without storage/s3 = %v; want an error naming the package to import", err)
	}
}
