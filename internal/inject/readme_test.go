package inject

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeNamesRealThings keeps README.md true: every Test/Example function and every file it names exists,
// and every file of the package is named, so the admission's path in words and the "how to add a template field"
// checklist cannot silently go stale.
func TestReadmeNamesRealThings(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	funcs := map[string]bool{}
	tests, _ := filepath.Glob("*_test.go")
	for _, f := range tests {
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = true
			}
		}
	}
	for _, m := range regexp.MustCompile("`((?:Test|Example)\\w+)`").FindAllStringSubmatch(text, -1) {
		if !funcs[m[1]] {
			t.Errorf("README.md names %s, which no test file defines", m[1])
		}
	}
	for _, m := range regexp.MustCompile("`([a-z_]+\\.go)`").FindAllStringSubmatch(text, -1) {
		if _, err := os.Stat(m[1]); err != nil {
			t.Errorf("README.md names %s, which does not exist", m[1])
		}
	}
	sources, _ := filepath.Glob("*.go")
	for _, f := range sources {
		if !strings.HasSuffix(f, "_test.go") && f != "doc.go" && !strings.Contains(text, "`"+f+"`") {
			t.Errorf("%s is not described in README.md: say where it sits on the admission's path", f)
		}
	}
}
