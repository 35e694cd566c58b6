package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

func readCommand() *command {
	var (
		operator  int64
		partition int64
		name      string
		version   int64
	)
	return &command{
		name:    "state read",
		args:    "DIR",
		nargs:   1,
		argHelp: locationArgHelp,
		summary: "print the keys and values of a state store version as JSON lines",
		doc: `
Prints the keys and values of one version of a state store in the
checkpoint location DIR, in ascending key order, one JSON object per line:

  {"key":"user-1","value":"42"}

A key or value that is not valid UTF-8 is given in standard base64 under
key_base64 or value_base64 instead:

  {"key_base64":"/2s=","value":"x"}

The store is the one of --operator and --partition (and --name for an
operator with several stores); 'cairn checkpoint inspect DIR' lists them.
A version that was cleaned up by maintenance, or does not exist yet, is an
error that names the versions available. Nothing is written to DIR.`,
		example: `
cairn state read /tmp/cairn-demo/checkpoint --operator 0 --partition 0 | head
cairn state read /tmp/cairn-demo/checkpoint --operator 0 --partition 0 --version 250`,
		flags: func(fs *flag.FlagSet) {
			fs.Int64Var(&operator, "operator", 0, "operator `ID` of the store (required)")
			fs.Int64Var(&partition, "partition", 0, "partition `ID` of the store (required)")
			fs.StringVar(&name, "name", "", "store `NAME`, for an operator with several stores (default: the default store)")
			fs.Int64Var(&version, "version", 0, "`VERSION` to read (default: the latest)")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			for _, f := range []string{"operator", "partition"} {
				if !inv.set[f] {
					return usagef(inv.cmd, "--%s is required: give the %s ID of the store to read ('cairn checkpoint inspect %s' lists the stores)", f, f, inv.args[0])
				}
			}
			if partition < math.MinInt32 || partition > math.MaxInt32 {
				return usagef(inv.cmd, "--partition %d is out of range: partition IDs are 32-bit", partition)
			}
			if inv.set["version"] && version < 0 {
				return usagef(inv.cmd, "--version %d is negative: versions start at 0 (the empty state)", version)
			}
			id := state.StoreID{Operator: operator, Partition: int32(partition), Name: name}
			v := int64(-1)
			if inv.set["version"] {
				v = version
			}
			return runRead(ctx, c, inv.args[0], id, v)
		},
	}
}

// kvLine is one line of state read. Exactly one of Key and KeyBase64 is
// set, and one of Value and ValueBase64 ([]byte marshals as standard
// base64).
type kvLine struct {
	Key         *string `json:"key,omitempty"`
	KeyBase64   []byte  `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
}

// runRead prints version v (-1: the latest) of store id.
func runRead(ctx context.Context, c *cli, loc string, id state.StoreID, v int64) error {
	s, err := openLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer s.Close()
	meta, err := state.ReadMeta(ctx, s, id)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no state store %s in %s%s", id.Dir(), loc, listStores(ctx, s, loc))
	}
	if err != nil {
		return fmt.Errorf("read metadata of state store %s: %w", id.Dir(), err)
	}
	p, err := state.Open(ctx, meta.Provider, s, id, meta.Schema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		return err
	}
	defer p.Close()
	if v < 0 {
		if v, err = p.LatestVersion(ctx); err != nil {
			return err
		}
	}
	rs, err := p.GetReadStore(ctx, v)
	if err != nil {
		return err
	}
	defer rs.Abort()
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for kv, err := range rs.Range(nil, nil) {
		if err != nil {
			return fmt.Errorf("read version %d of %s: %w", v, id.Dir(), err)
		}
		var line kvLine
		if utf8.Valid(kv.Key) {
			k := string(kv.Key)
			line.Key = &k
		} else {
			line.KeyBase64 = kv.Key
		}
		if utf8.Valid(kv.Value) {
			val := string(kv.Value)
			line.Value = &val
		} else {
			line.ValueBase64 = kv.Value
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return out.Flush()
}

// listStores returns a sentence naming the stores of a location, for an
// error about a store that is not there.
func listStores(ctx context.Context, s storage.Storage, loc string) string {
	objs, err := s.List(ctx, "state/")
	if err != nil {
		return ""
	}
	stores, _ := findStores(objs)
	if len(stores) == 0 {
		all, err := s.List(ctx, "")
		if err == nil {
			if hint := nestedLocationHint(loc, all); hint != "" {
				return "; " + hint
			}
		}
		return "; the location has no state stores"
	}
	var names []string
	for _, st := range stores {
		n := fmt.Sprintf("--operator %d --partition %d", st.id.Operator, st.id.Partition)
		if st.id.Name != "" {
			n += " --name " + st.id.Name
		}
		names = append(names, n)
		if len(names) == 10 {
			names = append(names, fmt.Sprintf("... (%d stores; see 'cairn checkpoint inspect %s')", len(stores), loc))
			break
		}
	}
	return "; its stores are: " + strings.Join(names, ", ")
}
