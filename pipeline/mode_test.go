package pipeline_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/pipeline"
)

// TestPublishedOutputIsReadable checks that published output and the
// checkpoint honour the umask: every file 0644 and every directory 0755
// under umask 022, so that other accounts can read what a job published.
func TestPublishedOutputIsReadable(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p, err := pipeline.New("modes", pipeline.Options{Checkpoint: filepath.Join(dir, "checkpoint"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sales := pipeline.Source(p, "sales", pipeline.StageOptions{Version: "1"},
		func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Sale], error) {
			return dataset.FromSlice(s, []Sale{{"EU", 5}, {"US", 7}}, 2), nil
		})
	pipeline.Publish(p, sales, filepath.Join(dir, "out"), dataset.WriteOptions{})
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = 0o755
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %03o, want %03o under umask 022", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("the run wrote no files")
	}
}
