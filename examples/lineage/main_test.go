package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckpointCutsTheLineage(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), out, 6, 3); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out.Name())
	text := string(data)
	for _, want := range []string{"before the checkpoint: lineage depth 7", "after the checkpoint: lineage depth 1", "CheckpointScan ", "final lineage depth 1"} {
		if !strings.Contains(text, want) {
			t.Fatalf("output lacks %q:\n%s", want, text)
		}
	}
}
