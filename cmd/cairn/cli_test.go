package main

import (
	"flag"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		args []string
		want []string // in stderr
	}{
		{nil, []string{"no command given", "Commands:"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "demo", "checkpoint verify"}},
		{[]string{"checkpoint"}, []string{`"checkpoint" needs a subcommand`, "'cairn checkpoint verify'", "'cairn checkpoint inspect'"}},
		{[]string{"checkpoint", "repair", dir}, []string{`unknown command "checkpoint repair"`, "'cairn checkpoint verify'"}},
		{[]string{"checkpoint", "verify"}, []string{"missing DIR", "usage: cairn checkpoint verify DIR", "cairn checkpoint verify --help"}},
		{[]string{"checkpoint", "inspect", "--json"}, []string{"missing DIR", "usage: cairn checkpoint inspect DIR [flags]"}},
		{[]string{"checkpoint", "verify", dir, dir}, []string{"too many arguments: expected DIR"}},
		{[]string{"state", "read", dir}, []string{"--operator is required", "cairn checkpoint inspect " + dir}},
		{[]string{"state", "read", dir, "--operator", "0"}, []string{"--partition is required"}},
		{[]string{"state", "read", "--operator", "0", "--partition", "0"}, []string{"missing DIR"}},
		{[]string{"state", "read", dir, "--operator", "x", "--partition", "0"}, []string{`invalid value "x" for flag --operator`}},
		{[]string{"state", "read", dir, "--operator", "0", "--partition", "0", "--version", "-1"}, []string{"--version -1 is negative"}},
		{[]string{"demo-state", "--versions", "2"}, []string{"--versions 2 is out of range"}},
		{[]string{"demo-state", "--bogus"}, []string{"flag provided but not defined: --bogus", "cairn demo-state --help"}},
		{[]string{"demo", "now"}, []string{`unexpected argument "now"`}},
		{[]string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"checkpoint", "clean", dir}, []string{"--retain is required", "usage: cairn checkpoint clean DIR [flags]"}},
		{[]string{"checkpoint", "clean", dir, "--retain", "0"}, []string{"--retain 0 is out of range", "--retain 1"}},
		{[]string{"checkpoint", "clean", "--retain", "3"}, []string{"missing DIR"}},
		{[]string{"checkpoint", "verify", dir, "--sink="}, []string{"--sink needs the location of a file sink"}},
	}
	for _, c := range cases {
		r := cairn(t, c.args...)
		r.wantExit(t, 2, c.args...)
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("cairn %s: stderr does not say %q:\n%s", strings.Join(c.args, " "), w, r)
			}
		}
		if r.stdout != "" {
			t.Errorf("cairn %s: a usage error printed to stdout:\n%s", strings.Join(c.args, " "), r)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"demo", "checkpoint verify", "checkpoint inspect", "checkpoint clean", "state read", "version"} {
		for _, args := range [][]string{
			append(strings.Fields(name), "--help"),
			append(strings.Fields(name), "-h"),
			{"help", name},
		} {
			if len(args) == 2 && args[0] == "help" {
				args = append([]string{"help"}, strings.Fields(name)...)
			}
			r := cairn(t, args...)
			r.wantExit(t, 0, args...)
			for _, w := range []string{"Usage: cairn " + name, "Example:\n  cairn "} {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("cairn %s: help does not contain %q:\n%s", strings.Join(args, " "), w, r)
				}
			}
		}
	}
	// Flags are listed with their defaults.
	r := cairn(t, "demo-state", "--help")
	for _, w := range []string{"--dir DIR", "--versions N", "(default 300)", "--seed SEED", "(default: random)"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("demo --help does not list %q:\n%s", w, r.stdout)
		}
	}
	r = cairn(t, "checkpoint", "inspect", "--help")
	for _, w := range []string{"--json", "latest_version", "oldest_version", "snapshot_versions", "stream", "query_id", "pinned",
		"last_committed_batch", "pending_batch", "watermark_ms", "next_watermark_ms", "state_bytes", "stored_bytes"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("checkpoint inspect --help does not document %q:\n%s", w, r.stdout)
		}
	}
	r = cairn(t, "checkpoint", "verify", "--help")
	for _, w := range []string{"--sink DIR", "offsets and commits logs", "CRC32C"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("checkpoint verify --help does not document %q:\n%s", w, r.stdout)
		}
	}
	r = cairn(t, "checkpoint", "clean", "--help")
	for _, w := range []string{"--retain N", "--dry-run", "lease", "freed N objects"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("checkpoint clean --help does not document %q:\n%s", w, r.stdout)
		}
	}

	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := cairn(t, args...)
		r.wantExit(t, 0, args...)
		for _, w := range []string{"demo", "checkpoint verify", "checkpoint inspect", "checkpoint clean", "state read", "version"} {
			if !strings.Contains(r.stdout, "\n  "+w+" ") {
				t.Errorf("cairn %s does not list %q:\n%s", args[0], w, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "demo-writer") {
			t.Errorf("cairn %s lists the hidden demo-writer command:\n%s", args[0], r.stdout)
		}
	}
	for _, args := range [][]string{{"checkpoint", "--help"}, {"help", "checkpoint"}} {
		r := cairn(t, args...)
		r.wantExit(t, 0, args...)
		if !strings.Contains(r.stdout, "checkpoint verify") || !strings.Contains(r.stdout, "checkpoint inspect") || !strings.Contains(r.stdout, "checkpoint clean") {
			t.Errorf("cairn %s does not list the checkpoint commands:\n%s", strings.Join(args, " "), r)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := cairn(t, "version")
	r.wantExit(t, 0, "version")
	if !strings.HasPrefix(r.stdout, "cairn ") || !strings.Contains(r.stdout, " go1.") {
		t.Errorf("version prints %q, want cairn, its version and the Go version", r.stdout)
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  string
		json bool
	}{
		{[]string{"DIR"}, "[DIR]", false},
		{[]string{"DIR", "--json"}, "[DIR]", true},
		{[]string{"--json", "DIR"}, "[DIR]", true},
		{[]string{"A", "--json", "B"}, "[A B]", true},
		{[]string{"--", "--json"}, "[--json]", false},
		{[]string{"A", "--", "--json", "B"}, "[A --json B]", false},
	} {
		var asJSON bool
		fs := newTestFlagSet(&asJSON)
		pos, err := parseInterspersed(fs, c.args)
		if err != nil || strings.Join(pos, " ") != strings.Trim(c.pos, "[]") || asJSON != c.json {
			t.Errorf("parse %q: positional %q, --json %v, err %v; want %s, %v", c.args, pos, asJSON, err, c.pos, c.json)
		}
	}
}

func newTestFlagSet(b *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.BoolVar(b, "json", false, "")
	return fs
}
