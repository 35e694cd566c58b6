package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDemo runs the demo as a user would, with --dir, then checks the
// location it leaves with verify, inspect and state read against the
// oracle computed here.
func TestDemo(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	if s := os.Getenv("CAIRN_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CAIRN_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with CAIRN_SEED=%d)", seed, seed)
	dir := t.TempDir()
	loc := filepath.Join(dir, "checkpoint")
	args := []string{"demo-state", "--dir", dir, "--versions", "60", "--seed", strconv.FormatUint(seed, 10)}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	for _, want := range []string{
		"seed        " + strconv.FormatUint(seed, 10),
		"killed with SIGKILL",
		"Recovered state matches the oracle",
		"Final state matches the oracle",
		"keys at version 60",
		"OK: ",
		"The checkpoint is kept in " + loc,
		"checkpoint verify " + loc,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output does not say %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "\r") {
		t.Errorf("demo redraws its progress line although stdout is not a terminal:\n%q", r.stdout)
	}

	verify := []string{"checkpoint", "verify", loc}
	cairn(t, verify...).wantExit(t, 0, verify...)

	inspect := []string{"checkpoint", "inspect", "--json", loc}
	ri := cairn(t, inspect...)
	ri.wantExit(t, 0, inspect...)
	var doc inspectDoc
	if err := json.Unmarshal([]byte(ri.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Stores) != 1 || doc.Stores[0].LatestVersion == nil || *doc.Stores[0].LatestVersion != 60 {
		t.Fatalf("inspect after the demo: want one store at version 60, got\n%s", ri.stdout)
	}

	// The state at version 60, read by the CLI, is the oracle's.
	read := []string{"state", "read", loc, "--operator", "0", "--partition", "0"}
	rr := cairn(t, read...)
	rr.wantExit(t, 0, read...)
	checkJSONLines(t, rr.stdout)
	got := map[string][]byte{}
	sc := bufio.NewScanner(strings.NewReader(rr.stdout))
	for sc.Scan() {
		var line map[string]string
		json.Unmarshal(sc.Bytes(), &line)
		got[string(field(t, line, "key", sc.Text()))] = field(t, line, "value", sc.Text())
	}
	want := demoWorkload(seed).Oracle(60)
	if len(got) != len(want) {
		t.Fatalf("state read printed %d keys, the oracle has %d", len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
			t.Fatalf("state read: key %q = %q (present %v), oracle %q", k, g, ok, v)
		}
	}

	// A second demo in the same place refuses to mix with the first.
	again := cairn(t, args...)
	again.wantExit(t, 1, args...)
	if !strings.Contains(again.stderr, "already holds a checkpoint") {
		t.Errorf("second demo in a used --dir: want a message that the location is in use, got\n%s", again)
	}
}
