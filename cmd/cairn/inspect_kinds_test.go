package main

import (
	"strings"
	"testing"
)

// TestInspectKnowsProviderFilesAndParts checks that inspect does not call
// the files of a healthy location "not a cairn object": pipeline stage
// parts are data parts, and Pebble's SSTs (counted with their stores) are
// not foreign either.
func TestInspectKnowsProviderFilesAndParts(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ dir, want string }{
		"pebble query": {buildPebbleQuery(t), "pebble"},
		"pipeline":     {buildPipelineLocation(t).dir, "data part"},
	} {
		args := []string{"checkpoint", "inspect", tc.dir}
		r := cairn(t, args...)
		r.wantExit(t, 0, args...)
		if strings.Contains(r.stdout, "not a cairn object") || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("inspect of a sound %s location: want %q and no \"not a cairn object\", got\n%s", name, tc.want, r.stdout)
		}
	}
}
