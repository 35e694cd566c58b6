package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildExample builds the example's binary into a temporary directory.
func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "clickstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// A bad input line stops the job naming -dead-letter; with -dead-letter
// DIR it is set aside there and the job goes on. A mistyped -input is an
// error naming it.
func TestDeadLetterAndMissingInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; runs without -short")
	}
	bin := buildExample(t)
	root := t.TempDir()
	in := filepath.Join(root, "input")
	os.Mkdir(in, 0o755)
	good := `{"user":"u1","ts":"2026-01-01T00:00:03Z","amount":5}` + "\n"
	os.WriteFile(filepath.Join(in, "a.jsonl"), []byte(good), 0o644)
	os.WriteFile(filepath.Join(in, "b.jsonl"), []byte(good+"{\"user\": oops\n"), 0o644)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}

	out, code := run("-input", in, "-output", filepath.Join(root, "out1"), "-checkpoint", filepath.Join(root, "ckpt1"), "-drain")
	if code != 1 || !strings.Contains(out, "b.jsonl line 2") || !strings.Contains(out, "-dead-letter") {
		t.Fatalf("without -dead-letter: exit %d\n%s", code, out)
	}

	dl := filepath.Join(root, "dead")
	out, code = run("-input", in, "-output", filepath.Join(root, "out2"), "-checkpoint", filepath.Join(root, "ckpt2"), "-drain", "-dead-letter", dl)
	if code != 0 {
		t.Fatalf("with -dead-letter: exit %d\n%s", code, out)
	}
	data, err := os.ReadFile(filepath.Join(dl, "b.jsonl.jsonl"))
	if err != nil || !strings.Contains(string(data), `"line":2`) || !strings.Contains(string(data), `oops`) {
		t.Fatalf("dead letters of b.jsonl: %s, %v", data, err)
	}

	missing := filepath.Join(root, "inptu")
	out, code = run("-input", missing, "-output", filepath.Join(root, "out3"), "-checkpoint", filepath.Join(root, "ckpt3"), "-until-idle")
	if code != 1 || !strings.Contains(out, "-input "+missing) {
		t.Fatalf("a missing -input directory: exit %d\n%s", code, out)
	}
}
