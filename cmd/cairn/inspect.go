package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

func inspectCommand() *command {
	var asJSON bool
	return &command{
		name:    "checkpoint inspect",
		args:    "DIR",
		nargs:   1,
		argHelp: locationArgHelp,
		summary: "describe a checkpoint location: its streaming query, state stores and other objects",
		doc: `
Describes what is in the checkpoint location DIR:

  - when DIR holds a streaming query (a metadata object): its ID, creation
    time and cairn version; its pinned settings (partitions, state provider,
    source, sink, and each operator's kind, key and value schema, watermark
    delay and window); the first and last batch of its offsets and commits
    logs; the last committed batch; the pending batch, written ahead and not
    committed, which the next start replays; the watermark of the last
    batch (from its offsets entry) and the next one (from the last commit
    entry); and per stateful operator the size of its state: keys and
    bytes summed over its stores, each loaded read-only at its latest
    version;
  - each state store (a directory state/<operator>/<partition>[/<name>] with
    a _meta object): operator, partition, store name, provider, key and value
    schema, latest version, oldest loadable version, snapshot versions,
    number of deltas, objects and bytes;
  - the other objects, counted per top-level prefix (offsets/, commits/,
    _lease/, ...) with the kinds their headers name.

Apart from the streaming query's state sizes it reads object headers and
metadata only; 'cairn checkpoint verify' checks every byte. DIR is a
directory path or a storage URL. Nothing is written to it.

With --json it prints one JSON document instead of the tables. Its fields,
which later versions only add to:

  format           1, the version of this document's layout
  location         the location's URL
  objects, bytes   all objects of the location and their total size
  stores[]         one per state store, in name order:
    dir              "state/<operator>/<partition>[/<name>]"
    operator         operator ID (integer)
    partition        partition ID (integer)
    name             store name; "" for the default store
    provider         state provider, e.g. "memstate"
    key_schema       key schema, e.g. "string"
    value_schema     value schema, e.g. "bytes"
    created          when the store was created (RFC 3339), if readable
    latest_version   newest committed version; null if the store cannot be opened
    oldest_version   oldest version that can be loaded; null if unknown
    snapshot_versions  versions that have a snapshot, ascending
    deltas           number of delta objects
    objects, bytes   objects directly in the store's directory and their size
    error            why the store could not be described; absent when it could
  other[]          objects outside the stores, per top-level prefix, in order:
    prefix           "offsets/" for a directory, or the name of a top-level object
    objects, bytes   count and total size
    kinds            object count per kind, e.g. {"log entry": 12}; objects
                     cairn did not write count as "not a cairn object"
  stream           the streaming query; absent when DIR holds none:
    query_id         the query's ID (32 hex digits)
    created          when the query first started (RFC 3339)
    cairn_version    the cairn version that created it
    pinned           the settings recorded at the first start:
      partitions       partitions of the stateful operators
      state_provider   e.g. "memstate"
      operator_graph   fingerprint of the operators
      operators[]      {id, kind, key_schema, value_schema, and where they
                       apply watermark_delay_ms, window_size_ms,
                       window_slide_ms}
      source, sink     their identities, e.g. "files:jsonl:/data/out"
    offsets          {first, last}: the batches of the offsets log; null if empty
    commits          {first, last}: the batches of the commits log; null if empty
    last_committed_batch  null if no batch is committed
    pending_batch    the batch written ahead and not committed; null if none
    watermark_ms     watermark of the last batch (Unix ms); null if no batch
    next_watermark_ms  watermark the next batch gets, from the last commit
                     entry (Unix ms); null if none
    state[]          per stateful operator, in operator order:
      operator, kind   its ID and kind
      stores           state stores found (one per partition)
      keys             keys at the stores' latest versions
      state_bytes      the provider's estimate of their size in memory
      stored_bytes     size of the stores' objects
      error            why a store could not be loaded; absent when all could
    errors[]         what could not be read; absent when everything could`,
		example: `
cairn checkpoint inspect /tmp/cairn-demo/checkpoint
cairn checkpoint inspect /tmp/cairn-demo/checkpoint --json | jq '.stores[0].latest_version'`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print a JSON document (fields above) instead of tables")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			return runInspect(ctx, c, inv.args[0], asJSON)
		},
	}
}

// inspectDoc is the --json document. Field names are a stable interface:
// add fields, never rename or remove them.
type inspectDoc struct {
	Format   int          `json:"format"`
	Location string       `json:"location"`
	Objects  int          `json:"objects"`
	Bytes    int64        `json:"bytes"`
	Stores   []storeInfo  `json:"stores"`
	Other    []prefixInfo `json:"other"`
	Stream   *streamInfo  `json:"stream,omitempty"`
}

type storeInfo struct {
	Dir              string     `json:"dir"`
	Operator         int64      `json:"operator"`
	Partition        int32      `json:"partition"`
	Name             string     `json:"name"`
	Provider         string     `json:"provider"`
	KeySchema        string     `json:"key_schema"`
	ValueSchema      string     `json:"value_schema"`
	Created          *time.Time `json:"created,omitempty"`
	LatestVersion    *int64     `json:"latest_version"`
	OldestVersion    *int64     `json:"oldest_version"`
	SnapshotVersions []int64    `json:"snapshot_versions"`
	Deltas           int        `json:"deltas"`
	Objects          int        `json:"objects"`
	Bytes            int64      `json:"bytes"`
	Error            string     `json:"error,omitempty"`
}

type prefixInfo struct {
	Prefix  string         `json:"prefix"`
	Objects int            `json:"objects"`
	Bytes   int64          `json:"bytes"`
	Kinds   map[string]int `json:"kinds"`
}

func runInspect(ctx context.Context, c *cli, loc string, asJSON bool) error {
	s, err := openLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer s.Close()
	doc, err := inspectLocation(ctx, s)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		printInspect(c, doc)
	}
	if len(doc.Stores) == 0 {
		if objs, err := s.List(ctx, ""); err == nil {
			if hint := nestedLocationHint(loc, objs); hint != "" {
				fmt.Fprintln(c.stderr, hint)
			}
		}
	}
	for _, st := range doc.Stores {
		if st.Error != "" {
			fmt.Fprintf(c.stderr, "Some stores could not be described; run 'cairn checkpoint verify %s' to check every object.\n", loc)
			break
		}
	}
	if doc.Stream != nil && len(doc.Stream.Errors) > 0 {
		fmt.Fprintf(c.stderr, "Some of the streaming query could not be read; run 'cairn checkpoint verify %s' to check every object.\n", loc)
	}
	return nil
}

// inspectLocation describes s from a listing, object headers and the
// stores' metadata.
func inspectLocation(ctx context.Context, s storage.Storage) (*inspectDoc, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list checkpoint location %s: %w", s.Location(), err)
	}
	doc := &inspectDoc{Format: 1, Location: s.Location(), Objects: len(objs), Stores: []storeInfo{}, Other: []prefixInfo{}}
	stores, _ := findStores(objs)
	byDir := map[string]*storeInfo{}
	infos := make([]storeInfo, len(stores))
	for i, st := range stores {
		infos[i] = describeStore(ctx, s, st)
		byDir[st.dir] = &infos[i]
	}
	other := map[string]*prefixInfo{}
	for _, o := range objs {
		doc.Bytes += o.Size
		if si, ok := byDir[path.Dir(o.Name)]; ok {
			si.Objects++
			si.Bytes += o.Size
			if v, kind, ok := memstate.ParseFileName(path.Base(o.Name)); ok {
				if kind == "delta" {
					si.Deltas++
				} else {
					si.SnapshotVersions = append(si.SnapshotVersions, v)
				}
			}
			continue
		}
		prefix := o.Name
		if i := strings.IndexByte(o.Name, '/'); i >= 0 {
			prefix = o.Name[:i+1]
		}
		pi := other[prefix]
		if pi == nil {
			pi = &prefixInfo{Prefix: prefix, Kinds: map[string]int{}}
			other[prefix] = pi
		}
		pi.Objects++
		pi.Bytes += o.Size
		pi.Kinds[kindLabel(ctx, s, o.Name)]++
	}
	for i := range infos {
		slices.Sort(infos[i].SnapshotVersions)
	}
	slices.SortFunc(infos, func(a, b storeInfo) int { return strings.Compare(a.Dir, b.Dir) })
	doc.Stores = infos
	for _, p := range slices.Sorted(maps.Keys(other)) {
		doc.Other = append(doc.Other, *other[p])
	}
	doc.Stream = describeStream(ctx, s, objs, doc.Stores)
	return doc, nil
}

// kindLabel names the kind of an object from its header.
func kindLabel(ctx context.Context, s storage.Storage, name string) string {
	head, err := peekObject(ctx, s, name)
	switch {
	case errors.Is(err, errNotCairn):
		// Not framed, and not necessarily foreign: state providers and
		// dataset parts keep files in formats of their own (Pebble SSTs,
		// Parquet), which 'checkpoint verify' checks against the records
		// that list them.
		base := path.Base(name)
		if owners := state.Owners(base); len(owners) > 0 {
			return "file of state provider " + strings.Join(owners, ", ")
		}
		if dataset.IsPartName(base) {
			return "data part"
		}
		return "not a cairn object"
	case err != nil:
		return "unreadable header"
	}
	return head.kind.String()
}

// describeStore reads a store's metadata and asks its provider for the
// latest and the oldest loadable version. It loads no state.
func describeStore(ctx context.Context, s storage.Storage, st storeRef) storeInfo {
	si := storeInfo{Dir: st.dir, Operator: st.id.Operator, Partition: st.id.Partition, Name: st.id.Name, SnapshotVersions: []int64{}}
	meta, err := state.ReadMeta(ctx, s, st.id)
	if err != nil {
		si.Error = "cannot read metadata: " + err.Error()
		return si
	}
	si.Provider, si.KeySchema, si.ValueSchema = meta.Provider, meta.Schema.Key, meta.Schema.Value
	if !meta.Created.IsZero() {
		created := meta.Created
		si.Created = &created
	}
	p, err := state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		si.Error = "cannot open: " + err.Error()
		return si
	}
	defer p.Close()
	latest, err := p.LatestVersion(ctx)
	if err != nil {
		si.Error = "cannot tell the latest version: " + err.Error()
		return si
	}
	si.LatestVersion = &latest
	oldest, err := p.OldestVersion(ctx)
	if err != nil {
		si.Error = err.Error()
		return si
	}
	si.OldestVersion = &oldest
	return si
}

func printInspect(c *cli, doc *inspectDoc) {
	w := c.stdout
	fmt.Fprintf(w, "checkpoint location %s\n%s, %s\n", doc.Location, plural(doc.Objects, "object"), humanBytes(doc.Bytes))
	if doc.Stream != nil {
		printStream(w, doc.Stream)
	}
	if len(doc.Stores) == 0 {
		fmt.Fprint(w, "\nState stores: none\n")
	} else {
		fmt.Fprintf(w, "\nState stores (%d):\n", len(doc.Stores))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OPERATOR\tPARTITION\tNAME\tPROVIDER\tKEY\tVALUE\tLATEST\tOLDEST\tDELTAS\tOBJECTS\tBYTES\tSNAPSHOTS")
		for _, st := range doc.Stores {
			name := st.Name
			if name == "" {
				name = "(default)"
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
				st.Operator, st.Partition, name, dash(st.Provider), dash(st.KeySchema), dash(st.ValueSchema),
				optVersion(st.LatestVersion), optVersion(st.OldestVersion), st.Deltas, st.Objects,
				humanBytes(st.Bytes), snapshotList(st.SnapshotVersions))
		}
		tw.Flush()
		for _, st := range doc.Stores {
			if st.Error != "" {
				fmt.Fprintf(w, "%s: %s\n", st.Dir, st.Error)
			}
		}
	}
	if len(doc.Other) == 0 {
		fmt.Fprint(w, "\nOther objects: none\n")
		return
	}
	fmt.Fprint(w, "\nOther objects:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tOBJECTS\tBYTES\tKINDS")
	for _, p := range doc.Other {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(p.Kinds)) {
			kinds = append(kinds, fmt.Sprintf("%s (%d)", k, p.Kinds[k]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Prefix, p.Objects, humanBytes(p.Bytes), strings.Join(kinds, ", "))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optVersion(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

// snapshotList shows snapshot versions, eliding the middle of a long list.
func snapshotList(vs []int64) string {
	if len(vs) == 0 {
		return "none"
	}
	str := func(vs []int64) string {
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = fmt.Sprint(v)
		}
		return strings.Join(parts, ", ")
	}
	if len(vs) <= 5 {
		return str(vs)
	}
	return fmt.Sprintf("%s ... %s (%d)", str(vs[:3]), str(vs[len(vs)-1:]), len(vs))
}

// humanBytes formats a size in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
}
