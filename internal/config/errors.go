package config

import (
	"fmt"
	"strconv"
	"strings"
)

// fieldError is one problem in a config, located as precisely as we can.
type fieldError struct {
	source string // file name; empty for a Config built in code
	line   int    // 0 when unknown
	path   string // field path, e.g. interfaces[1].attach
	label  string // path as shown, e.g. "interfaces[1].attach (r1)"
	msg    string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	if e.source != "" {
		b.WriteString(e.source)
		if e.line > 0 {
			fmt.Fprintf(&b, ":%d", e.line)
		}
		b.WriteString(": ")
	}
	label := e.label
	if label == "" {
		label = e.path
	}
	if label != "" {
		b.WriteString(label)
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// problems collects fieldErrors so all of them are reported together.
type problems struct {
	source string
	lines  map[string]int // field path -> line, from the YAML node tree
	// raw: integers too large for their field, as the document wrote
	// them (the field holds the type's limit); see shown.
	raw  map[string]string
	list []*fieldError
}

// add records a problem at path; the line comes from the nearest
// enclosing path the document has, so a missing key points at its parent.
func (p *problems) add(path, label, format string, args ...any) {
	p.list = append(p.list, &fieldError{
		source: p.source,
		line:   p.lineOf(path),
		path:   path,
		label:  label,
		msg:    fmt.Sprintf(format, args...),
	})
}

// addAt records a problem at an explicit line.
func (p *problems) addAt(line int, path, format string, args ...any) {
	p.list = append(p.list, &fieldError{
		source: p.source,
		line:   line,
		path:   path,
		msg:    fmt.Sprintf(format, args...),
	})
}

// shown is the integer at path as the document wrote it.
func (p *problems) shown(path string, n int) string {
	if r, ok := p.raw[path]; ok {
		return r
	}
	return strconv.Itoa(n)
}

// present reports whether the document has a value at path.
func (p *problems) present(path string) bool {
	_, ok := p.lines[path]
	return ok
}

func (p *problems) lineOf(path string) int {
	for {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// covered reports whether list has a problem at path or at one of its
// parents (the root's path is "").
func covered(list []*fieldError, path string) bool {
	for _, e := range list {
		if e.path == "" || e.path == path || strings.HasPrefix(path, e.path+".") || strings.HasPrefix(path, e.path+"[") {
			return true
		}
	}
	return false
}

func (p *problems) errs() []error {
	out := make([]error, len(p.list))
	for i, e := range p.list {
		out[i] = e
	}
	return out
}
