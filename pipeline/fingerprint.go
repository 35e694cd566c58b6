package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/cairn-data/cairn/internal/iox"
)

// stageSpec is everything a stage's output depends on. Its fingerprint
// names the stage's checkpoint directory, so a stage is restored only from
// output made by the same logic from the same inputs.
type stageSpec struct {
	Stage      string          `json:"stage"`
	Version    string          `json:"version"`
	Params     json.RawMessage `json:"params,omitempty"`
	Type       string          `json:"type"`
	Schema     string          `json:"schema"` // hash of the record type's fields, types and tags
	Partitions int             `json:"partitions,omitempty"`
	Inputs     []inputPrint    `json:"inputs,omitempty"`
	Files      []fileStamp     `json:"files,omitempty"`
}

// inputPrint is an input stage and its fingerprint.
type inputPrint struct {
	Stage       string `json:"stage"`
	Fingerprint string `json:"fingerprint"`
}

// fileStamp identifies the contents of a source file.
type fileStamp struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified,omitzero"`
	CRC32C   string    `json:"crc32c,omitempty"`
}

// fingerprint is a hash of the spec's canonical JSON, 16 hex digits.
func (s stageSpec) fingerprint() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // the spec holds only marshalable values; params were marshalled already
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// specOf builds a stage's spec from its options and its inputs'
// fingerprints.
func specOf(s *stage, inputFPs map[*stage]string) (stageSpec, error) {
	spec := stageSpec{Stage: s.name, Version: s.opts.Version, Type: s.typ.String(), Schema: schemaHash(s.typ), Partitions: s.opts.Partitions}
	if s.opts.Params != nil {
		b, err := json.Marshal(s.opts.Params)
		if err != nil {
			return stageSpec{}, fmt.Errorf("pipeline: stage %s: StageOptions.Params cannot be marshalled as JSON: %w", s.name, err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return stageSpec{}, err
		}
		spec.Params = buf.Bytes()
	}
	for _, in := range s.inputs {
		spec.Inputs = append(spec.Inputs, inputPrint{Stage: in.name, Fingerprint: inputFPs[in]})
	}
	stamps, err := stampFiles(s.name, s.opts.Files, s.opts.FileChecksums)
	if err != nil {
		return stageSpec{}, err
	}
	spec.Files = stamps
	return spec, nil
}

// stampFiles expands the patterns and stamps each file, in name order.
func stampFiles(stage string, patterns []string, checksums bool) ([]fileStamp, error) {
	seen := map[string]bool{}
	var stamps []fileStamp
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("pipeline: stage %s: file pattern %q: %w", stage, pat, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("pipeline: stage %s: no file matches %q (StageOptions.Files): check the input directory", stage, pat)
		}
		for _, f := range files {
			f = filepath.Clean(f)
			if seen[f] {
				continue
			}
			seen[f] = true
			fi, err := os.Stat(f)
			if err != nil {
				return nil, fmt.Errorf("pipeline: stage %s: %w", stage, err)
			}
			if fi.IsDir() {
				continue
			}
			fs := fileStamp{Path: filepath.ToSlash(f), Size: fi.Size()}
			if checksums {
				c, err := fileCRC(f)
				if err != nil {
					return nil, fmt.Errorf("pipeline: stage %s: %w", stage, err)
				}
				fs.CRC32C = c
			} else {
				fs.Modified = fi.ModTime().UTC()
			}
			stamps = append(stamps, fs)
		}
	}
	sort.Slice(stamps, func(i, j int) bool { return stamps[i].Path < stamps[j].Path })
	return stamps, nil
}

func fileCRC(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := crc32.New(iox.Castagnoli)
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return fmt.Sprintf("%08x", h.Sum32()), nil
}

// diffSpecs says, for people, what changed from old to new.
func diffSpecs(old, new stageSpec) string {
	var why []string
	if old.Version != new.Version {
		why = append(why, fmt.Sprintf("version %q → %q", old.Version, new.Version))
	}
	if op, np := compactJSON(old.Params), compactJSON(new.Params); !bytes.Equal(op, np) {
		why = append(why, fmt.Sprintf("params %s → %s", orNone(op), orNone(np)))
	}
	if old.Type != new.Type {
		why = append(why, fmt.Sprintf("record type %s → %s", old.Type, new.Type))
	} else if old.Schema != new.Schema {
		why = append(why, fmt.Sprintf("the fields of record type %s changed", new.Type))
	}
	if old.Partitions != new.Partitions {
		why = append(why, fmt.Sprintf("partitions %d → %d", old.Partitions, new.Partitions))
	}
	oldIn := map[string]string{}
	for _, in := range old.Inputs {
		oldIn[in.Stage] = in.Fingerprint
	}
	for _, in := range new.Inputs {
		if fp, ok := oldIn[in.Stage]; !ok {
			why = append(why, "new input "+in.Stage)
		} else if fp != in.Fingerprint {
			why = append(why, "input "+in.Stage+" changed")
		}
		delete(oldIn, in.Stage)
	}
	for name := range oldIn {
		why = append(why, "input "+name+" removed")
	}
	oldF := map[string]fileStamp{}
	for _, f := range old.Files {
		oldF[f.Path] = f
	}
	var added, changed []string
	for _, f := range new.Files {
		o, ok := oldF[f.Path]
		switch {
		case !ok:
			added = append(added, f.Path)
		case o != f:
			changed = append(changed, f.Path)
		}
		delete(oldF, f.Path)
	}
	removed := make([]string, 0, len(oldF))
	for p := range oldF {
		removed = append(removed, p)
	}
	sort.Strings(removed)
	why = append(why, fileChanges("new file", added)...)
	why = append(why, fileChanges("changed file", changed)...)
	why = append(why, fileChanges("removed file", removed)...)
	if len(why) == 0 {
		return "fingerprint changed"
	}
	return strings.Join(why, "; ")
}

func fileChanges(what string, files []string) []string {
	switch len(files) {
	case 0:
		return nil
	case 1:
		return []string{what + " " + files[0]}
	case 2, 3:
		return []string{what + "s " + strings.Join(files, ", ")}
	}
	return []string{fmt.Sprintf("%ss %s and %d more", what, strings.Join(files[:2], ", "), len(files)-2)}
}

func orNone(b []byte) string {
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

// schemaHash hashes the shape of a record type: for structs, every field's
// name, type and tag, recursively. Adding a field to a struct changes it,
// so output stored with the old fields is not restored into the new type
// (Parquet would fill the new field with zero values, silently).
func schemaHash(t reflect.Type) string {
	var b strings.Builder
	writeShape(&b, t, map[reflect.Type]bool{})
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

func writeShape(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	switch t.Kind() {
	case reflect.Struct:
		if seen[t] {
			b.WriteString(t.String())
			return
		}
		seen[t] = true
		b.WriteString("struct{")
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(b, "%s ", f.Name)
			writeShape(b, f.Type, seen)
			if f.Tag != "" {
				fmt.Fprintf(b, " %q", f.Tag)
			}
			b.WriteString(";")
		}
		b.WriteString("}")
	case reflect.Pointer:
		b.WriteString("*")
		writeShape(b, t.Elem(), seen)
	case reflect.Slice:
		b.WriteString("[]")
		writeShape(b, t.Elem(), seen)
	case reflect.Array:
		fmt.Fprintf(b, "[%d]", t.Len())
		writeShape(b, t.Elem(), seen)
	case reflect.Map:
		b.WriteString("map[")
		writeShape(b, t.Key(), seen)
		b.WriteString("]")
		writeShape(b, t.Elem(), seen)
	default:
		b.WriteString(t.Kind().String())
	}
}

// compactJSON removes the indentation records are stored with.
func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}
