package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestInspectJSON(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t)
	args := []string{"checkpoint", "inspect", dir, "--json"} // the flag after the location
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	var doc inspectDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output is not the documented JSON document: %v\n%s", err, r.stdout)
	}
	if doc.Format != 1 || len(doc.Stores) != 2 {
		t.Fatalf("format %d, %d stores; want format 1 and 2 stores:\n%s", doc.Format, len(doc.Stores), r.stdout)
	}
	st := doc.Stores[0]
	switch {
	case st.Dir != "state/0/0" || st.Operator != 0 || st.Partition != 0 || st.Name != "":
		t.Errorf("first store is %+v, want state/0/0", st)
	case st.Provider != "memstate" || st.KeySchema != "string" || st.ValueSchema != "bytes":
		t.Errorf("store state/0/0: provider %q schema %q/%q, want memstate string/bytes", st.Provider, st.KeySchema, st.ValueSchema)
	case st.LatestVersion == nil || *st.LatestVersion != 6:
		t.Errorf("store state/0/0: latest_version %v, want 6", st.LatestVersion)
	case st.OldestVersion == nil || *st.OldestVersion != 3:
		t.Errorf("store state/0/0: oldest_version %v, want 3 (versions 1 and 2 were cleaned up)", st.OldestVersion)
	case len(st.SnapshotVersions) != 2 || st.SnapshotVersions[0] != 3 || st.SnapshotVersions[1] != 6:
		t.Errorf("store state/0/0: snapshot_versions %v, want [3 6]", st.SnapshotVersions)
	case st.Deltas != 3 || st.Objects != 6:
		t.Errorf("store state/0/0: %d deltas, %d objects; want 3 deltas (4 to 6) and 6 objects", st.Deltas, st.Objects)
	case st.Created == nil || !st.Created.Equal(fixtureCreated):
		t.Errorf("store state/0/0: created %v, want %v", st.Created, fixtureCreated)
	}
	if named := doc.Stores[1]; named.Dir != "state/1/2/counts" || named.Name != "counts" || named.KeySchema != "int64" ||
		named.LatestVersion == nil || *named.LatestVersion != 2 || named.OldestVersion == nil || *named.OldestVersion != 0 {
		t.Errorf("second store is %+v, want state/1/2/counts with int64 keys at versions 0 to 2", named)
	}
	want := map[string]int{"commits/": 1, "offsets/": 2}
	if len(doc.Other) != len(want) {
		t.Fatalf("other objects %+v, want %v", doc.Other, want)
	}
	for _, p := range doc.Other {
		if p.Objects != want[p.Prefix] || p.Kinds["log entry"] != p.Objects {
			t.Errorf("other objects under %s: %+v, want %d log entries", p.Prefix, p, want[p.Prefix])
		}
	}
	// Keys of the document, as the help documents them.
	var raw map[string]any
	json.Unmarshal([]byte(r.stdout), &raw)
	for _, k := range []string{"format", "location", "objects", "bytes", "stores", "other"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("document has no %q field", k)
		}
	}
}

func TestInspectTextGolden(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t)
	args := []string{"checkpoint", "inspect", dir}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	got := strings.ReplaceAll(r.stdout, "file://"+dir, "file://LOCATION")
	golden(t, "inspect.golden", got)
}

func TestInspectNestedLocationHint(t *testing.T) {
	t.Parallel()
	dir := buildFixture(t) // .../checkpoint
	parent := strings.TrimSuffix(dir, "/checkpoint")
	args := []string{"checkpoint", "inspect", parent}
	r := cairn(t, args...)
	r.wantExit(t, 0, args...)
	if !strings.Contains(r.stderr, dir+" looks like a checkpoint location") {
		t.Errorf("inspect of the parent of a location does not point at the location:\n%s", r)
	}
}
