package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// This file holds the checks a file source makes on each record beyond
// decoding it: required fields (the `cairn:"required"` struct tag and
// ReadOptions.Required) and valid UTF-8 (ReadOptions.AllowInvalidUTF8).
// A record that fails one is a bad record, like one that does not decode.

var (
	// ErrMissingField is the error (RecordError.Err wraps it; use
	// errors.Is) of a record without a value for a required field: a JSON
	// key absent or null, a CSV field empty, a Parquet value null.
	ErrMissingField = errors.New("dataset: a required field is missing")
	// ErrInvalidUTF8 is the error (RecordError.Err wraps it; use errors.Is)
	// of a record with text that is not valid UTF-8, read without
	// ReadOptions.AllowInvalidUTF8.
	ErrInvalidUTF8 = errors.New("dataset: invalid UTF-8")
)

// reasonError is a bad record's reason: its own message, and a sentinel
// for errors.Is.
type reasonError struct {
	msg  string
	kind error
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.kind }

// recordChecks are the per-record rules of one file source for one format.
type recordChecks struct {
	strict           bool // JSONL: unknown fields are bad
	allowInvalidUTF8 bool
	required         []requiredField
	// JSONL: a struct of one json.RawMessage per required field, under the
	// same JSON name, to tell a field absent or null from a zero value.
	presence reflect.Type
	// Parquet: the top-level fields that hold strings, to check their UTF-8.
	texts []textField
}

// requiredField is a field of T that every record must have.
type requiredField struct {
	index []int
	name  string // as the format names it: JSON key, CSV column, Parquet column
	why   string // `tagged cairn:"required"` or `in ReadOptions.Required`
	// Parquet: the column index in the file being read (set per file), and
	// whether the file's column can hold nulls at all.
	col      int
	nullable bool
}

// textField is a top-level field of T whose type holds strings.
type textField struct {
	index []int
	name  string
}

// newRecordChecks resolves the checks of a source of T in format ("jsonl",
// "csv" or "parquet"). specs are ReadCSV's fields (marked required here);
// schema is T's Parquet schema. op names the caller in errors.
func newRecordChecks(op string, t reflect.Type, format string, opts ReadOptions, specs []csvSpec, schema *parquet.Schema) (*recordChecks, error) {
	c := &recordChecks{strict: opts.Strict, allowInvalidUTF8: opts.AllowInvalidUTF8}
	if format == "jsonl" && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		t = t.Elem() // ReadJSONL[*Event] checks Event's fields
	}
	fields, err := requiredFieldsOf(op, t, opts.Required, format)
	if err != nil {
		return nil, err
	}
	for _, rf := range fields {
		f, why := rf.field, rf.why
		switch format {
		case "jsonl":
			name, err := jsonNameOf(t, f)
			if err != nil {
				return nil, fmt.Errorf("dataset: %s: field %s of %v is required (%s), but %w", op, f.Name, t, why, err)
			}
			c.required = append(c.required, requiredField{index: f.Index, name: name, why: why})
		case "csv":
			i := slices.IndexFunc(specs, func(s csvSpec) bool { return slices.Equal(s.index, f.Index) })
			if i < 0 {
				return nil, fmt.Errorf("dataset: %s: field %s of %v is required (%s), but it has no CSV column (tagged csv:\"-\")", op, f.Name, t, why)
			}
			specs[i].required, specs[i].why = true, why
		case "parquet":
			name := parquetNameOf(f)
			leaf, ok := schema.Lookup(name)
			if !ok || !leaf.Node.Leaf() || leaf.MaxRepetitionLevel > 0 {
				return nil, fmt.Errorf("dataset: %s: field %s of %v is required (%s), but it is not a plain Parquet column (a group or a repeated column); only single-valued columns can be required", op, f.Name, t, why)
			}
			c.required = append(c.required, requiredField{index: f.Index, name: name, why: why})
		}
	}
	if format == "jsonl" && len(c.required) > 0 {
		sf := make([]reflect.StructField, len(c.required))
		for i, r := range c.required {
			sf[i] = reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: reflect.TypeFor[json.RawMessage](),
				Tag: reflect.StructTag("json:" + strconv.Quote(r.name))}
		}
		c.presence = reflect.StructOf(sf)
	}
	if format == "parquet" && t.Kind() == reflect.Struct {
		for _, f := range parquetTopFields(t) {
			if holdsStrings(f.Type, map[reflect.Type]bool{}) {
				c.texts = append(c.texts, textField{index: f.Index, name: parquetNameOf(f)})
			}
		}
	}
	return c, nil
}

type requiredStructField struct {
	field reflect.StructField
	why   string
}

// requiredFieldsOf lists the fields of t that are required, by tag or by
// option, in field order; it refuses tags it does not know, tags where they
// cannot apply, and option names that are not fields of t.
func requiredFieldsOf(op string, t reflect.Type, byOption []string, format string) ([]requiredStructField, error) {
	if t.Kind() != reflect.Struct {
		if len(byOption) > 0 {
			return nil, fmt.Errorf("dataset: %s: ReadOptions.Required names fields, but %v is not a struct", op, t)
		}
		return nil, nil
	}
	var out []requiredStructField
	visible := reflect.VisibleFields(t)
	for _, f := range visible {
		tag, ok := f.Tag.Lookup("cairn")
		if !ok {
			if !f.Anonymous {
				if err := noNestedCairnTags(op, t, f.Name, f.Type, map[reflect.Type]bool{}); err != nil {
					return nil, err
				}
			}
			continue
		}
		for opt := range strings.SplitSeq(tag, ",") {
			if opt != "required" {
				return nil, fmt.Errorf("dataset: %s: field %s of %v has the tag cairn:%q; the only cairn tag is cairn:\"required\"", op, f.Name, t, tag)
			}
		}
		if !f.IsExported() || f.Anonymous {
			return nil, fmt.Errorf("dataset: %s: field %s of %v is tagged cairn:\"required\", but it is unexported or embedded; tag exported fields (an embedded struct's own fields can be tagged)", op, f.Name, t)
		}
		out = append(out, requiredStructField{f, `tagged cairn:"required"`})
	}
	for _, name := range byOption {
		i := slices.IndexFunc(visible, func(f reflect.StructField) bool {
			return f.IsExported() && !f.Anonymous && (f.Name == name || formatNameOf(t, f, format) == name)
		})
		if i < 0 {
			var names []string
			for _, f := range visible {
				if f.IsExported() && !f.Anonymous {
					names = append(names, f.Name)
				}
			}
			return nil, fmt.Errorf("dataset: %s: ReadOptions.Required names %q, which is not a field of %v; its fields are %s", op, name, t, strings.Join(names, ", "))
		}
		if !slices.ContainsFunc(out, func(r requiredStructField) bool { return slices.Equal(r.field.Index, visible[i].Index) }) {
			out = append(out, requiredStructField{visible[i], "in ReadOptions.Required"})
		}
	}
	return out, nil
}

// noNestedCairnTags refuses a cairn tag on a field of a nested struct,
// which the checks would otherwise ignore without a word.
func noNestedCairnTags(op string, root reflect.Type, path string, t reflect.Type, seen map[reflect.Type]bool) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || seen[t] {
		return nil
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		if _, ok := f.Tag.Lookup("cairn"); ok {
			return fmt.Errorf("dataset: %s: field %s.%s of %v has a cairn tag, but only the record type's own fields (and those of the structs it embeds) can be required", op, path, f.Name, root)
		}
		if err := noNestedCairnTags(op, root, path+"."+f.Name, f.Type, seen); err != nil {
			return err
		}
	}
	return nil
}

// formatNameOf is the name format gives field f of t, or "" if none.
func formatNameOf(t reflect.Type, f reflect.StructField, format string) string {
	switch format {
	case "jsonl":
		name, _ := jsonNameOf(t, f)
		return name
	case "csv":
		tag, _, _ := strings.Cut(f.Tag.Get("csv"), ",")
		if tag == "-" {
			return ""
		}
		return tag
	case "parquet":
		return parquetNameOf(f)
	}
	return ""
}

// jsonNameOf is the key of field f of t in a JSON object, as encoding/json
// names it, or an error if encoding/json does not read it from a key of
// the record's own object.
func jsonNameOf(t reflect.Type, f reflect.StructField) (string, error) {
	for i := 1; i < len(f.Index); i++ {
		if emb := t.FieldByIndex(f.Index[:i]); emb.Tag.Get("json") != "" {
			return "", fmt.Errorf("it is promoted through the embedded field %s, which has a json tag (encoding/json reads it from a nested object)", emb.Name)
		}
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		if f.Tag.Get("json") == "-" {
			return "", errors.New(`it is tagged json:"-", so JSON never fills it`)
		}
	case "":
		name = f.Name
	}
	return name, nil
}

// parquetNameOf is the column name parquet-go gives field f.
func parquetNameOf(f reflect.StructField) string {
	if name, _, _ := strings.Cut(f.Tag.Get("parquet"), ","); name != "" && name != "-" {
		return name
	}
	return f.Name
}

// parquetTopFields lists the fields of struct t that are columns or groups
// of its Parquet schema's top level (parquet-go flattens embedded structs).
func parquetTopFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous || f.Tag.Get("parquet") == "-" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// holdsStrings reports whether a value of t can hold a string in an
// exported place ([]byte is binary, not text).
func holdsStrings(t reflect.Type, seen map[reflect.Type]bool) bool {
	switch t.Kind() {
	case reflect.String, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Array:
		return holdsStrings(t.Elem(), seen)
	case reflect.Slice:
		return t.Elem().Kind() != reflect.Uint8 && holdsStrings(t.Elem(), seen)
	case reflect.Map:
		return holdsStrings(t.Key(), seen) || holdsStrings(t.Elem(), seen)
	case reflect.Struct:
		if seen[t] {
			return false
		}
		seen[t] = true
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && holdsStrings(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

// ---- messages ----

func missingFieldError(names []string, what, why string) error {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	msg := fmt.Sprintf("required field %s is %s (%s)", q[0], what, why)
	if len(q) > 1 {
		msg = fmt.Sprintf("required fields %s are %s (%s)", strings.Join(q, ", "), what, why)
	}
	return &reasonError{msg: msg, kind: ErrMissingField}
}

func invalidUTF8Error(where string) error {
	return &reasonError{kind: ErrInvalidUTF8,
		msg: "invalid UTF-8 " + where + " (to read it with each invalid byte replaced by U+FFFD, set ReadOptions.AllowInvalidUTF8)"}
}

// replaceInvalidUTF8 replaces each byte of s that is not part of a valid
// UTF-8 sequence with U+FFFD, as encoding/json does in JSON strings.
func replaceInvalidUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s { // range yields U+FFFD, width 1, for each invalid byte
		b.WriteRune(r)
	}
	return b.String()
}

// ---- JSONL ----

// checkJSON checks a decoded JSONL line b (rec is its record) and returns
// the field at fault and the error, or "", nil.
func (c *recordChecks) checkJSON(b []byte, rec reflect.Value) (string, error) {
	if len(c.required) == 0 {
		return "", nil
	}
	if rec.Kind() == reflect.Pointer {
		rec = rec.Elem() // not nil: a JSON object allocates it
	}
	// A required field that is not zero was present and not null; only a
	// zero one needs a second look at the line.
	var zero []int
	for i, r := range c.required {
		if f, err := rec.FieldByIndexErr(r.index); err != nil || f.IsZero() {
			zero = append(zero, i)
		}
	}
	if len(zero) == 0 {
		return "", nil
	}
	p := reflect.New(c.presence)
	if err := json.Unmarshal(b, p.Interface()); err != nil {
		return "", err
	}
	var missing []string
	why := ""
	for _, i := range zero {
		raw := p.Elem().Field(i).Bytes()
		if len(raw) == 0 || string(raw) == "null" {
			missing = append(missing, c.required[i].name)
			if why == "" {
				why = c.required[i].why
			}
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	return missing[0], missingFieldError(missing, "missing or null", why)
}

// jsonInvalidUTF8 describes the first invalid UTF-8 in line b: the field
// (the path of keys, "" if it is not in a string of the record) and the
// error.
func jsonInvalidUTF8(b []byte) (string, error) {
	off := 0
	for off < len(b) {
		r, size := utf8.DecodeRune(b[off:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		off += size
	}
	path, isKey := jsonPathAt(b, int64(off))
	switch {
	case path == "":
		return "", invalidUTF8Error(fmt.Sprintf("at byte %d of the line", off+1))
	case isKey:
		return path, invalidUTF8Error(fmt.Sprintf("in the key %q (byte %d of the line)", path, off+1))
	}
	return path, invalidUTF8Error(fmt.Sprintf("in the value of %q (byte %d of the line)", path, off+1))
}

// jsonPathAt returns the path ("user", "tags[2]", "meta.name") of the JSON
// token of b that holds byte off, and whether that token is a key; "" if
// the line does not tokenise up to off.
func jsonPathAt(b []byte, off int64) (string, bool) {
	type frame struct {
		obj     bool
		key     string
		idx     int
		wantKey bool
	}
	var stack []frame
	name := func() string {
		var s strings.Builder
		for i, f := range stack {
			if f.obj {
				if i > 0 {
					s.WriteByte('.')
				}
				s.WriteString(f.key)
			} else {
				fmt.Fprintf(&s, "[%d]", f.idx)
			}
		}
		return s.String()
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:top]
			continue
		}
		if top >= 0 && stack[top].obj && stack[top].wantKey {
			stack[top].key, _ = tok.(string)
			stack[top].wantKey = false
			if dec.InputOffset() > off {
				return name(), true
			}
			continue
		}
		if top >= 0 {
			if stack[top].obj {
				stack[top].wantKey = true // after this value
			} else {
				stack[top].idx++
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{obj: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{idx: -1})
		default:
			if dec.InputOffset() > off {
				return name(), false
			}
		}
	}
}

// ---- CSV ----

// csvValue checks the value of one CSV field: its UTF-8 and, for a
// required column, that it is not empty. It returns the value to decode.
func (c *recordChecks) csvValue(v string, b csvBinding) (string, error) {
	if !utf8.ValidString(v) {
		if !c.allowInvalidUTF8 {
			return "", invalidUTF8Error("in the value")
		}
		v = replaceInvalidUTF8(v)
	}
	if v == "" && b.spec.required {
		return "", missingFieldError([]string{b.column}, "empty", b.spec.why)
	}
	return v, nil
}

// ---- Parquet ----

// parquetColumns finds, in the schema of the file being read, the column
// of each required field. The caller has checked the file against T.
func (c *recordChecks) parquetColumns(file *parquet.Schema) []requiredField {
	out := slices.Clone(c.required)
	for i := range out {
		leaf, _ := file.Lookup(out[i].name)
		out[i].col, out[i].nullable = leaf.ColumnIndex, leaf.MaxDefinitionLevel > 0
	}
	return out
}

// parquetNulls returns, for a row group, the rows (numbered from the
// group's first) where a required column is null, with that column's
// field; nil if none.
func parquetNulls(g parquet.RowGroup, required []requiredField) (map[int64]requiredField, error) {
	var nulls map[int64]requiredField
	chunks := g.ColumnChunks()
	for _, r := range required {
		if !r.nullable {
			continue
		}
		err := catchPanic("malformed Parquet data", func() error {
			pages := chunks[r.col].Pages()
			defer pages.Close()
			values := make([]parquet.Value, 256)
			var row int64
			for {
				p, err := pages.ReadPage()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if p.NumNulls() == 0 {
					row += p.NumRows()
					parquet.Release(p)
					continue
				}
				vr := p.Values()
				for {
					n, err := vr.ReadValues(values)
					for _, v := range values[:n] {
						if v.IsNull() {
							if nulls == nil {
								nulls = map[int64]requiredField{}
							}
							if _, seen := nulls[row]; !seen {
								nulls[row] = r
							}
						}
						row++
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						parquet.Release(p)
						return err
					}
				}
				parquet.Release(p)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read column %s for its nulls: %w", r.name, err)
		}
	}
	return nulls, nil
}

// checkParquetText checks (or, with AllowInvalidUTF8, repairs) the strings
// of a Parquet record; it returns the column at fault and the error.
func (c *recordChecks) checkParquetText(rec reflect.Value) (string, error) {
	for _, f := range c.texts {
		v, err := rec.FieldByIndexErr(f.index)
		if err != nil {
			continue // behind a nil embedded pointer: nothing to check
		}
		if path, bad := invalidUTF8In(v, f.name, c.allowInvalidUTF8); bad {
			return path, invalidUTF8Error("in the value")
		}
	}
	return "", nil
}

// invalidUTF8In finds the first string in v that is not valid UTF-8 and
// returns its path under name. With fix it instead replaces the invalid
// bytes of every string it can set with U+FFFD, and reports none.
func invalidUTF8In(v reflect.Value, name string, fix bool) (string, bool) {
	switch v.Kind() {
	case reflect.String:
		if s := v.String(); !utf8.ValidString(s) {
			if !fix {
				return name, true
			}
			if v.CanSet() {
				v.SetString(replaceInvalidUTF8(s))
			}
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return invalidUTF8In(v.Elem(), name, fix)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			sub := name
			if !f.Anonymous {
				sub += "." + parquetNameOf(f)
			}
			if p, bad := invalidUTF8In(v.Field(i), sub, fix); bad {
				return p, true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "", false
		}
		for i := range v.Len() {
			if p, bad := invalidUTF8In(v.Index(i), fmt.Sprintf("%s[%d]", name, i), fix); bad {
				return p, true
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if !fix {
				if p, bad := invalidUTF8In(k, name+".key", false); bad {
					return p, true
				}
				if p, bad := invalidUTF8In(e, fmt.Sprintf("%s[%v]", name, k), false); bad {
					return p, true
				}
				continue
			}
			k2 := reflect.New(k.Type()).Elem()
			k2.Set(k)
			invalidUTF8In(k2, "", true)
			e2 := reflect.New(e.Type()).Elem()
			e2.Set(e)
			invalidUTF8In(e2, "", true)
			if !k2.Equal(k) {
				v.SetMapIndex(k, reflect.Value{})
			}
			v.SetMapIndex(k2, e2)
		}
	}
	return "", false
}
