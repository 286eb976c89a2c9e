package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// layers are the module's top-level packages from the domain up (README,
// "Architecture"): a package may import its own tree and the layers below
// its own, never one above nor a peer of the same layer. Packages outside
// these trees (the example program under docs/) may import anything but cmd.
var layers = map[string]int{
	"authz":     0, // domain: imports no store, transport or wiring
	"ledger":    1, // the store
	"iso":       1, // the ISO transport, beside the store
	"api":       2, // REST, on the store
	"simulator": 3, // the bundled network, a client of iso and api
	"bench":     4, // benchmarks, driving the simulator
	"cmd":       5, // the binary and its wiring
}

// domainForbidden are the stores and transports package authz must not
// depend on, even indirectly.
var domainForbidden = []string{"net/http", "database/sql", "github.com/redis/", "github.com/jackc/", "github.com/moov-io/"}

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// TestLayers checks the import graph `go list -deps` reports: no package
// imports a higher layer or a peer, authz depends on no store or
// transport, and nothing but cmd/antaca imports cmd/... (test files aside).
func TestLayers(t *testing.T) {
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	module := modulePath(t, root)
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		if p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/") {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < len(layers) {
		t.Fatalf("go list named %d packages of %s, want every layer", len(pkgs), module)
	}
	top := func(path string) string {
		rest, _ := strings.CutPrefix(path, module+"/")
		first, _, _ := strings.Cut(rest, "/")
		return first
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		from := top(p.ImportPath)
		seen[from] = true
		fromRank, layered := layers[from]
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := top(imp)
			if to == from {
				continue
			}
			if to == "cmd" {
				t.Errorf("%s imports %s: nothing imports the binary's packages", p.ImportPath, imp)
				continue
			}
			toRank, ok := layers[to]
			if !ok {
				t.Errorf("%s imports %s, which is in no layer", p.ImportPath, imp)
				continue
			}
			switch {
			case !layered:
			case toRank > fromRank:
				t.Errorf("%s imports %s: layer %s (%d) must not import the higher layer %s (%d)", p.ImportPath, imp, from, fromRank, to, toRank)
			case toRank == fromRank:
				t.Errorf("%s imports %s: %s and %s are peers and must not import each other", p.ImportPath, imp, from, to)
			}
		}
		if from != "authz" {
			continue
		}
		for _, f := range domainForbidden {
			base := strings.TrimSuffix(f, "/")
			for _, dep := range p.Deps {
				if dep == base || strings.HasPrefix(dep, base+"/") {
					t.Errorf("%s depends on %s: the domain imports no store or transport", p.ImportPath, dep)
					break
				}
			}
		}
	}
	for l := range layers {
		if !seen[l] {
			t.Errorf("layer %s has no package: keep the table in step with the tree", l)
		}
	}
}

// modulePath reads the module path from go.mod.
func modulePath(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}
