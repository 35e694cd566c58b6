package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// TestVerifySinkFindsUnaccountedOutput: verify --sink flags a manifest
// that no commit entry of the query accounts for (above its last commit,
// or written by another query) and a sink that another query owns.
func TestVerifySinkFindsUnaccountedOutput(t *testing.T) {
	t.Parallel()
	// manifest decodes a sink manifest, lets edit change it, and writes it
	// under batch as.
	manifest := func(t *testing.T, dir string, from, as int64, edit func(*stream.FileSinkManifest)) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "_manifests", strconv.FormatInt(from, 10)))
		if err != nil {
			t.Fatal(err)
		}
		payload, _, err := frame.Decode(b, "manifest", frame.KindManifest, 1)
		if err != nil {
			t.Fatal(err)
		}
		var m stream.FileSinkManifest
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		m.Batch = as
		edit(&m)
		data, _ := json.Marshal(m)
		put(t, dir, "_manifests/"+strconv.FormatInt(as, 10), frame.Encode(frame.KindManifest, 1, data))
	}
	type want struct{ object, says string }
	cases := []struct {
		name   string
		damage func(t *testing.T, f *streamFixture)
		want   []want
	}{
		{
			name: "manifest above the last commit",
			damage: func(t *testing.T, f *streamFixture) {
				manifest(t, f.sinkDir, 2, 5, func(*stream.FileSinkManifest) {})
			},
			want: []want{{"sink _manifests/5", "no commit entry accounts for batch 5 (the last committed batch is 2, and it has no offsets entry)"}},
		},
		{
			name: "manifest of another query",
			damage: func(t *testing.T, f *streamFixture) {
				manifest(t, f.sinkDir, 1, 1, func(m *stream.FileSinkManifest) { m.QueryID = "ffffffffffffffffffffffffffffffff" })
			},
			want: []want{{"sink _manifests/1", "written by query ffffffffffffffffffffffffffffffff, but this namespace of the sink is "}},
		},
		{
			name: "sink taken over by another query",
			damage: func(t *testing.T, f *streamFixture) {
				ctx := context.Background()
				sink, err := stream.NewFileSink[windowRow](f.sinkDir, stream.FileSinkOptions{Format: "jsonl", IfOwned: stream.SinkReplace})
				if err != nil {
					t.Fatal(err)
				}
				defer sink.Close()
				opts := f.options(storage.NewMem())
				opts.Checkpoint = ""
				q, err := stream.Start(ctx, f.src, perUserMinute, sink, opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := q.RunBatch(ctx); err != nil {
					t.Fatal(err)
				}
				if err := q.Close(ctx); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"sink _sink/", "the sink is written by _sink/1 (query "}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := buildStreamLocation(t, streamConfig{fileSink: true, pending: 3})
			c.damage(t, f)
			args := []string{"checkpoint", "verify", f.dir, "--sink", f.sinkDir}
			r := cairn(t, args...)
			r.wantExit(t, 1, args...)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			problems := lines[:len(lines)-1]
			for _, w := range c.want {
				found := false
				for _, l := range problems {
					if strings.HasPrefix(l, w.object+": ") && strings.Contains(l, w.says) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line names %s and says %q:\n%s", w.object, w.says, r)
				}
			}
			if len(problems) != len(c.want) {
				t.Errorf("%d problem lines, want %d:\n%s", len(problems), len(c.want), r)
			}
		})
	}
}
