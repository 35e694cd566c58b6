package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-data/cairn/dataset"
)

// publish writes an output. A local directory is written beside its final
// place and swapped in whole; any other location gets the parts, then
// _SUCCESS.
func (r *runner) publish(ctx context.Context, out *output) (Publication, error) {
	t0 := time.Now()
	s := out.stage
	d := r.data[s]
	opts := out.opts
	opts.Overwrite = true
	pub := Publication{Stage: s.name, Fingerprint: r.fps[s], Location: out.location}
	var rep dataset.WriteReport
	var err error
	if dir, ok := localPath(out.location); ok {
		rep, err = publishLocal(ctx, dir, r.cur.id+"-"+r.attempt, func(staging string) (dataset.WriteReport, error) {
			return s.ops.publish(ctx, d, staging, opts)
		})
	} else {
		rep, err = s.ops.publish(ctx, d, out.location, opts)
	}
	if err != nil {
		return pub, fmt.Errorf("pipeline %s: publish %s to %s: %w", r.p.name, s.name, out.location, err)
	}
	pub.Files, pub.Rows, pub.Bytes = rep.Files, rep.Records, rep.Bytes
	r.p.opts.Logger.Info("published "+s.name, "stage", s.name, "location", out.location, "files", rep.Files,
		"rows", rep.Records, "bytes", rep.Bytes, "elapsed", time.Since(t0).Round(time.Millisecond))
	return pub, nil
}

// localPath returns the directory of a local location: a plain path or a
// file:// URL.
func localPath(loc string) (string, bool) {
	if p, ok := strings.CutPrefix(loc, "file://"); ok {
		return p, true
	}
	if strings.Contains(loc, "://") {
		return "", false
	}
	return loc, true
}

// stagingMark is in the names of staging and replaced directories, which
// are siblings of the output directory.
const stagingMark = ".cairn-publish-"

// publishLocal writes an output directory through a staging directory
// beside it, then swaps the staging directory into place with one rename
// (renameat2 RENAME_EXCHANGE when the output exists), so that readers see
// the old output or the new one, never a mix. Leftovers of interrupted
// publications of the same output are deleted first.
func publishLocal(ctx context.Context, dir, tag string, write func(staging string) (dataset.WriteReport, error)) (dataset.WriteReport, error) {
	dir = filepath.Clean(dir)
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return dataset.WriteReport{}, err
	}
	old, _ := filepath.Glob(filepath.Join(parent, "."+base+stagingMark+"*"))
	for _, o := range old {
		if err := os.RemoveAll(o); err != nil {
			return dataset.WriteReport{}, fmt.Errorf("delete the leftover of an interrupted publication: %w", err)
		}
	}
	staging := filepath.Join(parent, "."+base+stagingMark+tag)
	rep, err := write(staging)
	if err != nil {
		os.RemoveAll(staging)
		return rep, err
	}
	if err := ctx.Err(); err != nil {
		os.RemoveAll(staging)
		return rep, err
	}
	_, statErr := os.Lstat(dir)
	switch {
	case errors.Is(statErr, os.ErrNotExist):
		err = os.Rename(staging, dir)
	case statErr != nil:
		err = statErr
	default:
		err = unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
		if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) {
			// No atomic exchange here: move the old output aside first.
			// Readers may briefly find no directory, never a partial one.
			aside := filepath.Join(parent, "."+base+stagingMark+tag+"-old")
			if err = os.Rename(dir, aside); err == nil {
				err = os.Rename(staging, dir)
				staging = aside
			}
		}
	}
	if err != nil {
		os.RemoveAll(staging)
		return rep, fmt.Errorf("move the output into place: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return rep, err
	}
	// After an exchange, staging holds the previous output.
	if err := os.RemoveAll(staging); err != nil {
		return rep, fmt.Errorf("delete the previous output: %w", err)
	}
	return rep, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
