package storage_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

// TestLocalHonoursUmask checks that objects and their directories get the
// modes any program of the user would give them (0666 and 0777 less the
// umask), not os.CreateTemp's 0600: published output must be readable by
// the accounts the user lets read it.
func TestLocalHonoursUmask(t *testing.T) {
	for _, tc := range []struct {
		umask         int
		file, dirMode fs.FileMode
	}{
		{0o022, 0o644, 0o755},
		{0o027, 0o640, 0o750},
		{0o002, 0o664, 0o775},
	} {
		old := syscall.Umask(tc.umask)
		dir := t.TempDir()
		s, err := storage.OpenLocal(dir)
		if err != nil {
			syscall.Umask(old)
			t.Fatal(err)
		}
		ctx := context.Background()
		err1 := storage.PutBytes(ctx, s, "a/b/plain", []byte("x"), storage.PutOptions{})
		err2 := storage.PutBytes(ctx, s, "a/b/absent", []byte("y"), storage.PutOptions{IfAbsent: true})
		s.Close()
		syscall.Umask(old)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		for _, name := range []string{"a/b/plain", "a/b/absent"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.file {
				t.Errorf("umask %03o: %s has mode %03o, want %03o", tc.umask, name, got, tc.file)
			}
		}
		fi, err := os.Stat(filepath.Join(dir, "a", "b"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.dirMode {
			t.Errorf("umask %03o: directory a/b has mode %03o, want %03o", tc.umask, got, tc.dirMode)
		}
	}
}
