package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStateReadGolden(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t)
	cases := []struct {
		golden string
		args   []string
	}{
		{"read-latest.golden", []string{"state", "read", dir, "--operator", "0", "--partition", "0"}},
		// Flags before, between and after the location.
		{"read-version4.golden", []string{"state", "read", "--version", "4", dir, "--operator=0", "--partition", "0"}},
		{"read-named-store.golden", []string{"state", "read", dir, "--operator", "1", "--partition", "2", "--name", "counts"}},
	}
	for _, c := range cases {
		r := cairn(t, c.args...)
		r.wantExit(t, 0, c.args...)
		checkJSONLines(t, r.stdout)
		golden(t, c.golden, r.stdout)
	}
}

// checkJSONLines checks the format state read promises: one JSON object
// per line, keys ascending, the text fields valid UTF-8 and the base64
// fields not.
func checkJSONLines(t *testing.T, out string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	var prev []byte
	n := 0
	for sc.Scan() {
		var line map[string]string
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d is not a JSON object of strings: %v: %s", n+1, err, sc.Text())
		}
		if len(line) != 2 {
			t.Fatalf("line %d has %d fields, want a key and a value: %s", n+1, len(line), sc.Text())
		}
		key := field(t, line, "key", sc.Text())
		field(t, line, "value", sc.Text())
		if prev != nil && string(prev) >= string(key) {
			t.Fatalf("line %d: key %q is not after %q", n+1, key, prev)
		}
		prev = key
		n++
	}
}

// field decodes the name or name_base64 field of a line.
func field(t *testing.T, line map[string]string, name, text string) []byte {
	t.Helper()
	if s, ok := line[name]; ok {
		return []byte(s)
	}
	b64, ok := line[name+"_base64"]
	if !ok {
		t.Fatalf("line has neither %s nor %s_base64: %s", name, name, text)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("%s_base64 is not standard base64: %v: %s", name, err, text)
	}
	if utf8.Valid(b) {
		t.Fatalf("%s_base64 holds valid UTF-8 %q, which belongs in %s: %s", name, b, name, text)
	}
	return b
}

func TestStateReadUnavailableVersions(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t)
	cases := []struct {
		version string
		want    []string
	}{
		// Cleaned up by maintenance: the message names the oldest version left.
		{"2", []string{"version 2 of state/0/0 was cleaned up", "oldest version available is 3"}},
		{"7", []string{"version 7 of state/0/0 does not exist", "3 to 6"}},
	}
	for _, c := range cases {
		args := []string{"state", "read", dir, "--operator", "0", "--partition", "0", "--version", c.version}
		r := cairn(t, args...)
		r.wantExit(t, 1, args...)
		if r.stdout != "" {
			t.Errorf("version %s: printed keys although the version is unavailable:\n%s", c.version, r.stdout)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("version %s: message does not say %q:\n%s", c.version, w, r.stderr)
			}
		}
	}
	// A store that is not there: the message lists the ones that are.
	args := []string{"state", "read", dir, "--operator", "0", "--partition", "9"}
	r := cairn(t, args...)
	r.wantExit(t, 1, args...)
	for _, w := range []string{"no state store state/0/9", "--operator 0 --partition 0", "--operator 1 --partition 2 --name counts"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("missing store: message does not say %q:\n%s", w, r.stderr)
		}
	}
}
