package config

import (
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestImportsNothingOfTheProject: config owns the defaults and bounds that
// the rest of fastpath uses, so it depends on none of it (every package may
// import config without a cycle).
func TestImportsNothingOfTheProject(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.Contains(imp.Path.Value, "github.com/fastpath-router/fastpath/") {
				t.Errorf("%s imports %s", e.Name(), imp.Path.Value)
			}
		}
	}
}
