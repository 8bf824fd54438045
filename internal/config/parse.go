package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Parse decodes a config strictly, fills defaults and validates it. source
// names the input (usually the file name) in error messages. All problems
// found are returned together, joined with errors.Join.
func Parse(data []byte, source string) (*Config, error) {
	root, err := parseOneDocument(data, source)
	if err != nil {
		return nil, err
	}
	p := &problems{source: source, lines: map[string]int{}, raw: map[string]string{}}
	checkShape(p, root, reflect.TypeFor[Config](), "")

	var c Config
	if len(p.list) == 0 && len(p.raw) == 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			// checkShape should have caught anything the decoder
			// rejects; never let a decoder error through unreported.
			return nil, yamlError(source, err)
		}
	} else if err := root.Decode(&c); err != nil {
		// checkShape pruned the bad nodes (or clamped integers too big
		// for their field), so this decode only serves to validate the
		// rest; it should not fail.
		p.list = append(p.list, yamlError(source, err))
	}
	// Validate the decoded values too, but drop problems already explained
	// by a shape problem at the same field (a list where a name belongs is
	// not also a "name: required"). Validation comes before the defaults,
	// so that a zero the document wrote is judged, not replaced.
	shape := p.list
	v := &problems{source: source, lines: p.lines, raw: p.raw}
	c.validate(v)
	for _, e := range v.list {
		if !covered(shape, e.path) {
			p.list = append(p.list, e)
		}
	}
	if len(p.list) > 0 {
		// File order reads best; problems without a line come first.
		slices.SortStableFunc(p.list, func(a, b *fieldError) int { return a.line - b.line })
		return nil, errors.Join(p.errs()...)
	}
	c.applyDefaults()
	return &c, nil
}

// parseOneDocument returns the content node of the only YAML document in
// data, refusing empty input and multi-document streams.
func parseOneDocument(data []byte, source string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, emptyError(source)
		}
		return nil, yamlError(source, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &fieldError{source: source, line: next.Line,
			msg: "more than one YAML document; the config must be a single document"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(source, err)
	}
	if len(doc.Content) == 0 {
		return nil, emptyError(source)
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, emptyError(source)
	}
	return root, nil
}

func emptyError(source string) error {
	return &fieldError{source: source,
		msg: "config is empty; it needs at least \"version: 1\" and one interface"}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError puts yaml's own line number where ours go, so every error
// reads "file:line: message".
func yamlError(source string, err error) *fieldError {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &fieldError{source: source, line: line, msg: "invalid YAML: " + m[2]}
	}
	return &fieldError{source: source, msg: fmt.Sprintf("invalid YAML: %v", err)}
}
