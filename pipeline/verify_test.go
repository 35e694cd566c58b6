package pipeline

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

// keptLocation runs the test pipeline once, keeping its stage outputs,
// and returns its checkpoint storage.
func keptLocation(t *testing.T) storage.Storage {
	t.Helper()
	st := storage.NewMem()
	opts := testOptions(st)
	opts.KeepIntermediates = true
	var calls computeCalls
	if _, err := buildTestPipeline(t, opts, testSpec{out: filepath.Join(t.TempDir(), "totals")}, &calls).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// stageObjects returns the objects of stage's output whose base name
// satisfies match.
func stageObjects(t *testing.T, st storage.Storage, stage string, match func(base string) bool) []string {
	t.Helper()
	objs, err := st.List(context.Background(), "runs/000001/stages/"+stage+"/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		if match(path.Base(o.Name)) {
			out = append(out, o.Name)
		}
	}
	if len(out) == 0 {
		t.Fatalf("stage %s has no object to damage", stage)
	}
	return out
}

func isParquetPart(base string) bool {
	return strings.HasPrefix(base, "part-") && strings.HasSuffix(base, ".parquet")
}

func TestVerifySoundLocation(t *testing.T) {
	ctx := context.Background()
	st := keptLocation(t)
	// A part of an attempt that stored its partition and lost the race
	// for the completion record (or crashed before writing it) is left
	// over, sound, until the stage is cleaned: not a problem.
	parts := stageObjects(t, st, "nums", isParquetPart)
	data, err := storage.GetBytes(ctx, st, parts[0])
	if err != nil {
		t.Fatal(err)
	}
	leftover := strings.Replace(parts[0], ".parquet", "x.parquet", 1)
	if err := storage.PutBytes(ctx, st, leftover, data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := Verify(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Problems {
		t.Errorf("problem in a sound location: %v", p)
	}
	// nums 6, weights 2, joined 4, totals 2 partitions.
	if c.Stages != 4 || c.Parts != 14 {
		t.Errorf("checked %d stage outputs and %d parts, want 4 and 14", c.Stages, c.Parts)
	}
	owned := map[string]bool{}
	for _, o := range c.Owned {
		owned[o] = true
	}
	for _, name := range append(parts, leftover, "runs/000001/stages/nums/"+path.Base(path.Dir(parts[0]))+"/_manifest") {
		if !owned[name] {
			t.Errorf("%s is not among the objects Verify checked", name)
		}
	}
	if c.Bytes == 0 {
		t.Error("Verify read 0 bytes")
	}
}

func TestVerifyFindsDamagedParts(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		damage  func(t *testing.T, st storage.Storage) string // returns the damaged object
		says    string
		missing bool
	}{
		{
			name: "part deleted",
			damage: func(t *testing.T, st storage.Storage) string {
				p := stageObjects(t, st, "joined", isParquetPart)[1]
				if err := st.Delete(ctx, p); err != nil {
					t.Fatal(err)
				}
				return p
			},
			says:    "records it complete",
			missing: true,
		},
		{
			name: "byte flipped in a part",
			damage: func(t *testing.T, st storage.Storage) string {
				p := stageObjects(t, st, "nums", isParquetPart)[2]
				rewriteObject(t, st, p, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
				return p
			},
			says: "CRC32C",
		},
		{
			name: "part truncated",
			damage: func(t *testing.T, st storage.Storage) string {
				p := stageObjects(t, st, "totals", isParquetPart)[0]
				rewriteObject(t, st, p, func(b []byte) []byte { return b[:len(b)-3] })
				return p
			},
			says: "bytes, the record says",
		},
		{
			name: "completion record damaged",
			damage: func(t *testing.T, st storage.Storage) string {
				p := stageObjects(t, st, "weights", func(b string) bool { return strings.HasSuffix(b, ".done") })[0]
				rewriteObject(t, st, p, func(b []byte) []byte { b[len(b)-10] ^= 0x20; return b })
				return p
			},
			says: "checksum",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := keptLocation(t)
			object := c.damage(t, st)
			check, err := Verify(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if len(check.Problems) != 1 {
				t.Fatalf("%d problems, want 1 naming %s: %v", len(check.Problems), object, check.Problems)
			}
			p := check.Problems[0]
			if p.Object != object || !strings.Contains(p.Err.Error(), c.says) {
				t.Errorf("problem %v; want one naming %s and saying %q", p, object, c.says)
			}
			if errors.Is(p.Err, storage.ErrNotFound) != c.missing {
				t.Errorf("problem %v matches storage.ErrNotFound: %v, want %v", p, !c.missing, c.missing)
			}
			if strings.Contains(object, ".parquet") && !strings.Contains(p.Err.Error(), "cairn pipeline drop-stage") {
				t.Errorf("problem %v does not say how to compute the stage again", p)
			}
		})
	}
}

// rewriteObject replaces the bytes of an object.
func rewriteObject(t *testing.T, st storage.Storage, name string, f func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := storage.GetBytes(ctx, st, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, st, name, f(b), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
