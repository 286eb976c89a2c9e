package main

import (
	"bufio"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// repoFiles lists the repository's files (slash paths from the root):
// the tracked ones and the new ones not ignored, where git can say; else
// every file outside the directories that only hold local files.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		var files []string
		for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
			if _, err := os.Stat(filepath.Join(root, f)); f != "" && err == nil { // deleted, not yet committed
				files = append(files, f)
			}
		}
		return files
	}
	skip := map[string]bool{".git": true, "bin": true, "keys": true, "ca": true, "sim-certs": true}
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if skip[rel] {
				return filepath.SkipDir
			}
			return nil
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// textFile reports whether a repository file is prose or code whose text
// may name a document (data such as go.sum, JSON and fuzz corpora is not).
func textFile(name string) bool {
	switch path.Ext(name) {
	case ".go", ".md", ".yaml", ".yml", ".sh", ".lua", ".sql", ".html":
		return true
	}
	switch path.Base(name) {
	case "Makefile", "Dockerfile", "run":
		return true
	}
	return false
}

var (
	// mdLink is an inline Markdown link or image: [text](target "title").
	mdLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// mdRef is a reference definition: [label]: target
	mdRef = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// docName is a document named in text: a path ending in .md.
	docName = regexp.MustCompile(`[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b`)
	// seed is the project's first brief, which is not in the repository.
	seed = regexp.MustCompile(`(?i)\bthe seed\b`)
	// seedSplit is the same name broken over two lines (of a comment).
	seedSplit = regexp.MustCompile(`(?i)\bthe[ \t]*\n[ \t/#*>-]*seed\b`)
	// urlRE is an absolute URL, whose path is not a repository file.
	urlRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://\S+`)
)

// docRef is one place a file points at a document.
type docRef struct {
	file   string // slash path from the root
	line   int
	target string // as written
	link   bool   // a Markdown link (else a name in prose or a comment)
}

// textLine is one line of a file that may name documents.
type textLine struct {
	n    int
	text string
}

// textLines returns, in order, the lines of a file that may name
// documents: for Go, only its comments; for other text files, every line.
func textLines(t *testing.T, root, name string) []textLine {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	var lines []textLine
	if path.Ext(name) != ".go" {
		sc := bufio.NewScanner(strings.NewReader(string(src)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			lines = append(lines, textLine{n, sc.Text()})
		}
		return lines
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	for _, g := range f.Comments {
		for _, c := range g.List {
			start := fset.Position(c.Pos()).Line
			for i, l := range strings.Split(c.Text, "\n") {
				lines = append(lines, textLine{start + i, l})
			}
		}
	}
	return lines
}

// docRefs finds every document reference of the repository's text files.
// In Markdown, a link inside a fenced code block is no link, but a
// document named there still counts.
func docRefs(t *testing.T, root string, files []string) []docRef {
	t.Helper()
	var refs []docRef
	for _, name := range files {
		if !textFile(name) {
			continue
		}
		isMD := path.Ext(name) == ".md"
		inFence := false
		var prev textLine
		for _, l := range textLines(t, root, name) {
			if isMD {
				if trimmed := strings.TrimSpace(l.text); strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
					inFence = !inFence
					continue
				}
				if !inFence {
					for _, m := range mdLink.FindAllStringSubmatch(l.text, -1) {
						refs = append(refs, docRef{file: name, line: l.n, target: m[1], link: true})
					}
					if m := mdRef.FindStringSubmatch(l.text); m != nil {
						refs = append(refs, docRef{file: name, line: l.n, target: m[1], link: true})
					}
				}
			}
			prose := urlRE.ReplaceAllString(l.text, " ")
			for _, m := range docName.FindAllString(prose, -1) {
				refs = append(refs, docRef{file: name, line: l.n, target: m})
			}
			if seed.MatchString(prose) {
				refs = append(refs, docRef{file: name, line: l.n, target: "the seed"})
			}
			if prev.n == l.n-1 && seedSplit.MatchString(prev.text+"\n"+l.text) {
				refs = append(refs, docRef{file: name, line: prev.n, target: "the seed"})
			}
			prev = l
		}
	}
	return refs
}

// resolves reports whether a reference names a file or directory of the
// repository: a link relative to its file (or to the root when it starts
// with /), a document name relative to its file or to the root.
func resolves(root string, r docRef) bool {
	if r.target == "the seed" {
		return false
	}
	target := r.target
	if r.link {
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
			return true // external, or an anchor of the same page
		}
		target, _, _ = strings.Cut(target, "#")
		target, _, _ = strings.Cut(target, "?")
		if u, err := url.PathUnescape(target); err == nil {
			target = u
		}
	}
	exists := func(p string) bool {
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return false // outside the repository
		}
		_, err = os.Stat(p)
		return err == nil
	}
	if strings.HasPrefix(target, "/") {
		return exists(filepath.Join(root, filepath.FromSlash(target)))
	}
	if exists(filepath.Join(root, filepath.FromSlash(path.Dir(r.file)), filepath.FromSlash(target))) {
		return true
	}
	return !r.link && exists(filepath.Join(root, filepath.FromSlash(target)))
}

// TestDocsReferencesExist: every relative Markdown link of the
// repository's documents leads to a file of the repository, and every
// document a comment, a document or a deployment file names exists. There
// are no exceptions: the planning documents and the first brief the project
// began from are not in the repository, so naming them fails too; the rules
// they stated are written in the repository's own documents.
func TestDocsReferencesExist(t *testing.T) {
	root := repoRoot(t)
	files := repoFiles(t, root)
	refs := docRefs(t, root, files)
	if len(refs) < 20 {
		t.Fatalf("only %d document references found: the scan is broken", len(refs))
	}
	reported := map[string]bool{}
	var problems []string
	for _, r := range refs {
		if resolves(root, r) {
			continue
		}
		where := fmt.Sprintf("%s:%d %s", r.file, r.line, path.Base(r.target))
		if reported[where] { // a link also names its target
			continue
		}
		reported[where] = true
		kind := "names"
		if r.link {
			kind = "links to"
		}
		problems = append(problems, fmt.Sprintf("%s:%d %s %q, which is not in the repository", r.file, r.line, kind, r.target))
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestDocsResolveLinks checks the checker on links it must accept and
// refuse.
func TestDocsResolveLinks(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		ref  docRef
		want bool
	}{
		{docRef{file: "README.md", target: "iso/README.md", link: true}, true},
		{docRef{file: "README.md", target: "docs/authz.md#order-of-checks", link: true}, true},
		{docRef{file: "README.md", target: "deploy/", link: true}, true},
		{docRef{file: "README.md", target: "https://example.com/MISSING.md", link: true}, true},
		{docRef{file: "README.md", target: "#configuration", link: true}, true},
		{docRef{file: "deploy/README.md", target: "k8s/README.md", link: true}, true},
		{docRef{file: "deploy/README.md", target: "../iso/README.md", link: true}, true},
		{docRef{file: "README.md", target: "docs/missing.md", link: true}, false},
		{docRef{file: "README.md", target: "../outside.md", link: true}, false},
		{docRef{file: "iso/doc.go", target: "README.md"}, true},
		{docRef{file: "authz/authz.go", target: "docs/authz.md"}, true},
		{docRef{file: "authz/authz.go", target: "CONTRACT.md"}, false},
		{docRef{file: "authz/authz.go", target: "the seed"}, false},
	}
	for _, tt := range tests {
		if got := resolves(root, tt.ref); got != tt.want {
			t.Errorf("%s -> %s: resolves %v, want %v", tt.ref.file, tt.ref.target, got, tt.want)
		}
	}
	for _, s := range []string{"see docs/ledger.md.", "(api/README.md)", "the seed's table"} {
		if !docName.MatchString(s) && !seed.MatchString(s) {
			t.Errorf("%q: no reference found", s)
		}
	}
	if seed.MatchString("the seeded cards") {
		t.Error(`"the seeded cards" taken for "the seed"`)
	}
	if !seedSplit.MatchString("// are the\n// seed's; Bureau") {
		t.Error(`"the" and "seed" on two comment lines: no reference found`)
	}
	if seedSplit.MatchString("// the\n// seeded cards") {
		t.Error(`"the" and "seeded" on two lines taken for "the seed"`)
	}
}

// TestDocsReadmeSettings: the README's configuration table has one entry
// per flag of `antaca serve`, with the flag's default, and no other.
func TestDocsReadmeSettings(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| variable | default | meaning |\n|---|---|---|\n")
	if !ok {
		t.Fatal("README.md has no configuration table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	backticked := regexp.MustCompile("`([^`]*)`")
	readme := map[string]string{} // ANTACA_X -> default as written ("" for —)
	for _, row := range strings.Split(table, "\n") {
		cols := strings.Split(row, " | ")
		if len(cols) < 3 {
			t.Fatalf("table row %q", row)
		}
		var names []string
		for _, m := range backticked.FindAllStringSubmatch(cols[0], -1) {
			names = append(names, m[1])
		}
		var defaults []string
		for _, d := range strings.Split(cols[1], " / ") {
			d = strings.TrimSpace(d)
			if d == "—" {
				d = ""
			}
			defaults = append(defaults, strings.Trim(d, "`"))
		}
		for i, n := range names {
			d := defaults[0]
			if len(defaults) == len(names) {
				d = defaults[i]
			} else if len(defaults) != 1 {
				t.Fatalf("row %q: %d names, %d defaults", row, len(names), len(defaults))
			}
			readme[n] = d
		}
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg := app.DefaultConfig()
	cfg.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		env := "ANTACA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		d, ok := readme[env]
		if !ok {
			t.Errorf("README configuration table lacks %s (--%s)", env, f.Name)
			return
		}
		delete(readme, env)
		want := f.DefValue
		if typ, _ := flag.UnquoteUsage(f); typ == "duration" {
			got, err := time.ParseDuration(d)
			if err != nil || got.String() != want {
				t.Errorf("README: %s default %q, flag default %s", env, d, want)
			}
			return
		}
		if want == "false" && d == "false" || d == want {
			return
		}
		t.Errorf("README: %s default %q, flag default %q", env, d, want)
	})
	for env := range readme {
		t.Errorf("README configuration table lists %s, which is no flag of serve", env)
	}
}
