package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A delta copied over another is whole (its checksums hold), and verify
// used to report 0 problems. It must name the object and say it is not
// what its name says.
func TestVerifyFindsCopiedObject(t *testing.T) {
	dir := buildWorkloadLocation(t)
	src, err := os.ReadFile(filepath.Join(dir, "state", "0", "0", "4.delta"))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, dir, "state/0/0/5.delta", func([]byte) []byte { return src })
	args := []string{"checkpoint", "verify", dir}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "state/0/0/5.delta: ") && strings.Contains(l, "not what its name says") && strings.Contains(l, "state/0/0/4.delta") {
			return
		}
	}
	t.Fatalf("no line names state/0/0/5.delta as holding state/0/0/4.delta:\n%s", r)
}
