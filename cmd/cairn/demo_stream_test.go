package main

import (
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStreamDemo runs the main demo as a user would, with --dir: a
// streaming job SIGKILLed twice, restarted, drained, and checked; then the
// kept checkpoint verifies and the sink reads back.
func TestStreamDemo(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	r := cairn(t, "demo", "--dir", dir, "--files", "24", "--per-file", "100", "--seed", strconv.FormatUint(seed, 10))
	r.wantExit(t, 0, "demo")
	for _, want := range []string{"was killed with SIGKILL", "restarts    2 after SIGKILL", "0 problems", "verdict     OK", "exactly once"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output does not say %q:\n%s", want, r)
		}
	}
	v := cairn(t, "checkpoint", "verify", filepath.Join(dir, "checkpoint"), "--sink", filepath.Join(dir, "output"))
	v.wantExit(t, 0, "verify after the demo")
	s := cairn(t, "sink", "read", filepath.Join(dir, "output"))
	s.wantExit(t, 0, "sink read after the demo")
	if n := strings.Count(s.stdout, "\n"); n < 100 {
		t.Errorf("sink read printed %d rows, want the demo's output", n)
	}
	again := cairn(t, "demo", "--dir", dir, "--files", "24")
	again.wantExit(t, 1, "a second demo in a used --dir")
}
