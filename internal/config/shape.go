package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkShape walks the YAML node tree against type t (the Go types and
// their yaml tags are the schema, so it cannot drift from the decoder) and records unknown or
// duplicate keys and values of the wrong kind, with field path and line.
// yaml.v3's strict decoder finds most of these too, but it stops short of
// field paths; this walk also records each field's line for validation.
// Bad keys are removed and bad values replaced by null, so the rest of the
// tree can still be decoded and validated. Recursion follows t, which is
// finite, so alias cycles cannot loop.
func checkShape(p *problems, n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		if _, ok := p.lines[path]; !ok {
			p.lines[path] = n.Line
		}
	}
	if isNull(n) {
		return // decodes to the zero value, which validation judges
	}
	switch t.Kind() {
	case reflect.Struct:
		checkMapping(p, n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.addAt(n.Line, path, "expected a list, got %s", describe(n))
			setNull(n)
			return
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if isNull(item) && t.Elem().Kind() == reflect.Struct {
				p.addAt(item.Line, ip, "empty list entry; expected a mapping of fields")
				*item = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: item.Line, Column: item.Column}
			}
			checkShape(p, item, t.Elem(), ip)
		}
	default:
		// An integer too big for int64 reads as a float in YAML: name
		// the range, not the type.
		// Clamped to the type's limit, the value reaches the field's own
		// range check, which then quotes the document's digits (p.raw).
		if isInt(t) && n.Kind == yaml.ScalarNode && intRE.MatchString(n.Value) {
			if !fitsInt(t, n.Value) {
				p.raw[path] = n.Value
				n.Tag, n.Value = "!!int", clampInt(t, strings.HasPrefix(n.Value, "-"))
				return
			}
		}
		// yaml.v3 truncates a float into an integer field (1.5 -> 1).
		if n.Kind != yaml.ScalarNode || isInt(t) && n.ShortTag() == "!!float" {
			p.addAt(n.Line, path, "expected %s, got %s", kindName(t), describe(n))
			setNull(n)
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			// A type with its own unmarshaler (Duration) knows best
			// what is wrong with the value.
			if ve, ok := errors.AsType[*valueError](err); ok {
				p.addAt(n.Line, path, "%s", ve.msg)
			} else {
				p.addAt(n.Line, path, "expected %s, got %s", kindName(t), describe(n))
			}
			setNull(n)
		}
	}
}

func checkMapping(p *problems, n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		p.addAt(n.Line, path, "expected a mapping of fields, got %s", describe(n))
		// Empty, not null: yaml.v3 drops null items from lists, which
		// would renumber the interfaces after this one.
		*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
		return
	}
	fields := yamlFields(t)
	seen := map[string]int{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.addAt(k.Line, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		kp := joinPath(path, k.Value)
		if k.ShortTag() == "!!merge" {
			p.addAt(k.Line, kp, "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.addAt(k.Line, kp, "duplicate key (first set at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			p.addAt(k.Line, kp, "unknown field%s; allowed here: %s", suggest(k.Value, fields),
				strings.Join(sortedKeys(fields), ", "))
			continue
		}
		p.lines[kp] = k.Line
		checkShape(p, v, ft, kp)
		kept = append(kept, k, v)
	}
	n.Content = kept
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// setNull turns a node whose problem is already reported into null, which
// decodes to the zero value.
func setNull(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// yamlFields maps yaml key names of struct t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest names the known field a typo most likely meant, or returns "".
func suggest(key string, fields map[string]reflect.Type) string {
	// Further than 2 edits is no longer a typo, but for a long key, whose
	// singular or plural alone takes 3 (max_entry, max_entries).
	best, bestDist := "", 3
	if len(key) >= 8 {
		bestDist = 4
	}
	for _, name := range sortedKeys(fields) {
		if d := editDistance(strings.ToLower(key), name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// isInt reports whether t is a plain integer (not a Duration, whose
// unmarshaler judges its own values).
func isInt(t reflect.Type) bool {
	if t == reflect.TypeFor[Duration]() {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// intRE matches what reads as a whole number in decimal, however long.
var intRE = regexp.MustCompile(`^[-+]?[0-9]+$`)

// fitsInt reports whether the decimal s fits integer type t. (yaml.v3
// reads digits beyond int64 as a float and converts it unchecked.)
func fitsInt(t reflect.Type, s string) bool {
	var err error
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		_, err = strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, t.Bits())
	} else {
		_, err = strconv.ParseInt(s, 10, t.Bits())
	}
	return !errors.Is(err, strconv.ErrRange)
}

// clampInt is the limit of integer type t in the direction of the sign.
func clampInt(t reflect.Type, negative bool) string {
	bits := t.Bits()
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		if negative {
			return "0"
		}
		return strconv.FormatUint(uint64(1)<<bits-1, 10)
	}
	if negative {
		return strconv.FormatInt(-(int64(1) << (bits - 1)), 10)
	}
	return strconv.FormatInt(int64(1)<<(bits-1)-1, 10)
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return `a duration such as "30s"`
	}
	if isInt(t) {
		return "an integer"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	default:
		return "a " + t.Kind().String()
	}
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kind := map[string]string{
			"!!str": "string", "!!int": "integer", "!!float": "number",
			"!!bool": "boolean", "!!timestamp": "timestamp",
		}[n.ShortTag()]
		if kind == "" {
			kind = n.ShortTag()
		}
		return fmt.Sprintf("%s %q", kind, n.Value)
	default:
		return "an unexpected YAML node"
	}
}
