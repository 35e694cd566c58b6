package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

func TestVerifyClean(t *testing.T) {
	t.Parallel()
	// The fixture's log entries stand for a query's, but it has no query
	// metadata: verify names it missing (TestVerifyNamesDamageToPebbleAndPipelines),
	// so the sound location here is the fixture's stores alone.
	fixture := buildFixture(t)
	for _, log := range []string{"offsets", "commits"} {
		if err := os.RemoveAll(filepath.Join(fixture, log)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{fixture, buildWorkloadLocation(t)} {
		for _, loc := range []string{dir, "file://" + dir} {
			args := []string{"checkpoint", "verify", loc}
			r := cairn(t, args...)
			r.wantExit(t, 0, args...)
			if !strings.HasPrefix(r.stdout, "checked ") || !strings.Contains(r.stdout, ": 0 problems") {
				t.Errorf("verify of a sound location: want only the summary with 0 problems, got\n%s", r)
			}
		}
	}
}

// TestVerifyFindsDamage damages a sound location in one way at a time and
// checks that verify exits 1 with a line for each damaged object, saying
// what is wrong.
func TestVerifyFindsDamage(t *testing.T) {
	t.Parallel()
	type want struct{ object, says string }
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []want
	}{
		{
			name: "byte flipped in the middle of a delta",
			damage: func(t *testing.T, dir string) {
				rewrite(t, dir, "state/0/0/5.delta", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })
			},
			want: []want{
				{"state/0/0/5.delta", "corrupt at byte"},
				{"state/0/0/5.delta", "checksum mismatch"},
				// Version 6 loads from snapshot 3 and deltas 4 to 6.
				{"state store state/0/0", "latest version 6 cannot be loaded"},
			},
		},
		{
			name: "snapshot truncated",
			damage: func(t *testing.T, dir string) {
				rewrite(t, dir, "state/0/0/3.snapshot", func(b []byte) []byte { return b[:len(b)-7] })
			},
			want: []want{
				{"state/0/0/3.snapshot", "truncated"},
				{"state store state/0/0", "latest version 6 cannot be loaded"},
			},
		},
		{
			name: "stray file",
			damage: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("remember to back up\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"notes.txt", "not checked: unknown to this build of cairn (not a cairn object: starts with"}},
		},
		{
			name: "empty stray file",
			damage: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "state/0/0/.keep"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"state/0/0/.keep", "not checked: unknown to this build of cairn (not a cairn object: it is empty"}},
		},
		{
			// The frame is sound; only decoding the records finds the damage.
			name: "well-framed delta with bad records",
			damage: func(t *testing.T, dir string) {
				rewrite(t, dir, "state/0/0/4.delta", func([]byte) []byte { return frame.Encode(frame.KindDelta, 1, []byte{9, 1, 'k'}) })
			},
			want: []want{
				{"state/0/0/4.delta", "unknown operation 9"},
				{"state store state/0/0", "latest version 6 cannot be loaded"},
			},
		},
		{
			name: "snapshot stored under a delta's name",
			damage: func(t *testing.T, dir string) {
				b, err := os.ReadFile(filepath.Join(dir, "state/0/0/3.snapshot"))
				if err != nil {
					t.Fatal(err)
				}
				rewrite(t, dir, "state/0/0/6.delta", func([]byte) []byte { return b })
			},
			want: []want{
				{"state/0/0/6.delta", "holds a state snapshot, expected a state delta"},
				{"state store state/0/0", "latest version 6 cannot be loaded"},
			},
		},
		{
			name: "delta missing from the chain",
			damage: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "state/0/0/5.delta")); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"state store state/0/0", "state/0/0/5.delta is missing"}},
		},
		{
			name: "store metadata deleted",
			damage: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "state/0/0/_meta")); err != nil {
					t.Fatal(err)
				}
			},
			want: []want{{"state/0/0", "no _meta object"}},
		},
		{
			name: "object of a kind this build does not know",
			damage: func(t *testing.T, dir string) {
				put(t, dir, "future/1", frame.Encode(frame.Kind('z'), 1, []byte("from the future")))
			},
			want: []want{{"future/1", "unknown kind 0x7a"}},
		},
		{
			name: "delta in a newer format version",
			damage: func(t *testing.T, dir string) {
				rewrite(t, dir, "state/0/0/5.delta", func(b []byte) []byte {
					payload, _, err := frame.Decode(b, "5.delta", frame.KindDelta, 2)
					if err != nil {
						t.Fatal(err)
					}
					return frame.Encode(frame.KindDelta, 3, payload)
				})
			},
			want: []want{
				{"state/0/0/5.delta", "format version 3"},
				{"state store state/0/0", "latest version 6 cannot be loaded"},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := buildWorkloadLocation(t)
			c.damage(t, dir)
			args := []string{"checkpoint", "verify", dir}
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
			objects := map[string]bool{}
			for _, w := range c.want {
				objects[w.object] = true
			}
			if len(problems) != len(objects) {
				t.Errorf("%d problem lines, want %d (one per damaged object or store):\n%s", len(problems), len(objects), r)
			}
			summary := lines[len(lines)-1]
			if !strings.HasPrefix(summary, "checked ") || !strings.HasSuffix(summary, ": "+plural(len(objects), "problem")) {
				t.Errorf("last line %q is not a summary counting %d problems", summary, len(objects))
			}
		})
	}
}

// rewrite replaces the bytes of a file of the location.
func rewrite(t *testing.T, dir, name string, f func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// put writes an object through the storage API.
func put(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	s, err := storage.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(context.Background(), s, name, data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyMissingLocation(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	args := []string{"checkpoint", "verify", missing}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	if !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("verify of a missing directory does not say it does not exist:\n%s", r)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("verify created the missing location %s", missing)
	}
}
