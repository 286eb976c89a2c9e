package iso

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/specs"

	"github.com/antaca/antaca/authz"
)

var update = flag.Bool("update", false, "rewrite iso/spec_*.json from the code")

func TestEveryReasonHasACodeInEveryProfile(t *testing.T) {
	for _, name := range ProfileNames() {
		p, err := ProfileByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range authz.Reasons() {
			code, ok := p.Code(r)
			if !ok {
				t.Errorf("profile %s: reason %s has no DE39 code", name, r)
				continue
			}
			if want := p.Spec.Fields[39].Spec().Length; len(code) != want {
				t.Errorf("profile %s: reason %s: code %q is not %d characters", name, r, code, want)
			}
		}
		if len(p.Codes) != len(authz.Reasons()) {
			t.Errorf("profile %s maps %d reasons, authz has %d", name, len(p.Codes), len(authz.Reasons()))
		}
	}
}

// TestActionCodesMatchCONTRACT pins a few rows by hand, including the
// reasons the interface document's table does not name, which answer with
// the row that covers them.
func TestActionCodesMatchCONTRACT(t *testing.T) {
	tests := []struct {
		reason     authz.Reason
		cmf, iso87 string
	}{
		{authz.ReasonApproved, "0000", "00"},
		{authz.ReasonApprovedPartial, "0002", "10"},
		{authz.ReasonWrongExpiry, "1001", "54"},
		{authz.ReasonCardRemoved, "1011", "14"},
		{authz.ReasonInsufficientUserFunds, "1016", "51"},
		{authz.ReasonInsufficientPartnerFunds, "1016", "51"},
		{authz.ReasonCurrencyMismatch, "1019", "57"},
		{authz.ReasonLockedConsolidation, "1016", "62"},
		{authz.ReasonLockedInactive, "1018", "78"},
		{authz.ReasonLockedReplaced, "1011", "14"},
		{authz.ReasonNetworkAccepted, "8000", "00"},
		{authz.ReasonFormatError, "9100", "30"},
		{authz.ReasonIssuerUnavailable, "9112", "91"},
		{authz.ReasonSystemError, "9109", "96"},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			if got := cmfProfile.Codes[tt.reason]; got != tt.cmf {
				t.Errorf("cmf: got %q, want %q", got, tt.cmf)
			}
			if got := iso87Profile.Codes[tt.reason]; got != tt.iso87 {
				t.Errorf("iso87: got %q, want %q", got, tt.iso87)
			}
		})
	}
}

// TestREADMEActionCodeTable keeps the interface document's table
// (README.md, "Action codes (DE39)") and the code's table row for row
// identical.
func TestREADMEActionCodeTable(t *testing.T) {
	rows := readmeActionCodes(t)
	if len(rows) != len(actionCodes) {
		t.Fatalf("README.md has %d action-code rows, the code %d", len(rows), len(actionCodes))
	}
	for i, row := range actionCodes {
		want := [3]string{row.label, row.cmf, row.iso87}
		if rows[i] != want {
			t.Errorf("row %d: README.md has %q, code has %q", i+1, rows[i], want)
		}
	}
}

func readmeActionCodes(t *testing.T) [][3]string {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][3]string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "| reason | `cmf` | `iso87` |") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		rows = append(rows, [3]string{strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestProfileByName(t *testing.T) {
	for _, tt := range []struct {
		name    string
		want    string
		wantErr bool
	}{
		{"cmf", "cmf", false},
		{"ISO87", "iso87", false},
		{" cmf ", "cmf", false},
		{"iso93", "", true},
		{"", "", true},
	} {
		p, err := ProfileByName(tt.name)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ProfileByName(%q): want error", tt.name)
			}
			continue
		}
		if err != nil || p.Name != tt.want {
			t.Errorf("ProfileByName(%q) = %v, %v; want %s", tt.name, p, err, tt.want)
		}
	}
}

// TestProfilesDifferOnlyInDE39 checks that the profiles are Spec87ASCII
// but for the standard bitmap (DE1), DE39 and the two added fields.
func TestProfilesDifferOnlyInDE39(t *testing.T) {
	for id, f := range specs.Spec87ASCII.Fields {
		for _, p := range []*Profile{cmfProfile, iso87Profile} {
			pf, ok := p.Spec.Fields[id]
			if !ok {
				t.Fatalf("%s lacks DE%d", p.Name, id)
			}
			if id != 1 && id != 39 && pf != f {
				t.Errorf("%s: DE%d differs from Spec87ASCII", p.Name, id)
			}
		}
	}
	for _, p := range []*Profile{cmfProfile, iso87Profile} {
		bs := p.Spec.Fields[1].Spec()
		if bs.Length != 8 || bs.DisableAutoExpand || bs.Enc != encoding.BytesToASCIIHex {
			t.Errorf("%s: bitmap is not 8-byte hex with a secondary bitmap: %+v", p.Name, bs)
		}
	}
	if specs.Spec87ASCII.Fields[1].Spec().Length != 16 {
		t.Error("building the profiles modified Spec87ASCII's bitmap")
	}
	if n := cmfProfile.Spec.Fields[39].Spec().Length; n != 4 {
		t.Errorf("cmf DE39 length %d, want 4", n)
	}
	if n := iso87Profile.Spec.Fields[39].Spec().Length; n != 2 {
		t.Errorf("iso87 DE39 length %d, want 2", n)
	}
	for _, p := range []*Profile{cmfProfile, iso87Profile} {
		for id, want := range map[int]int{70: 3, 95: 42} {
			f, ok := p.Spec.Fields[id]
			if !ok || f.Spec().Length != want {
				t.Errorf("%s: DE%d missing or not %d long", p.Name, id, want)
			}
		}
	}
	if len(specs.Spec87ASCII.Fields[39].Spec().Description) == 0 || specs.Spec87ASCII.Fields[39].Spec().Length != 2 {
		t.Error("building the profiles modified specs.Spec87ASCII")
	}
	if _, ok := specs.Spec87ASCII.Fields[70]; ok {
		t.Error("building the profiles added DE70 to specs.Spec87ASCII")
	}
}

// TestEveryFieldHasACharset: every data element of the profiles is checked
// against a declared character set on the wire.
func TestEveryFieldHasACharset(t *testing.T) {
	for _, p := range []*Profile{cmfProfile, iso87Profile} {
		for id := range p.Spec.Fields {
			if id < 2 {
				continue
			}
			if fieldCharsets[id] == charsetNone {
				t.Errorf("%s: DE%d has no character set", p.Name, id)
			}
		}
	}
	for id := range fieldCharsets {
		if _, ok := cmfProfile.Spec.Fields[id]; !ok {
			t.Errorf("DE%d has a character set but is not in the profiles", id)
		}
	}
}

// TestSpecFilesMatchExport keeps iso/spec_*.json equal to ExportSpec.
// Regenerate with: go generate ./iso (or go test ./iso -run TestSpecFilesMatchExport -update).
func TestSpecFilesMatchExport(t *testing.T) {
	for _, name := range ProfileNames() {
		p, _ := ProfileByName(name)
		got, err := ExportSpec(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(".", "spec_"+name+".json")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go generate ./iso)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from ExportSpec(%s); run go generate ./iso", path, name)
		}
		imported, err := specs.ImportJSON(want)
		if err != nil {
			t.Fatalf("importing %s: %v", path, err)
		}
		if n := imported.Fields[39].Spec().Length; n != p.Spec.Fields[39].Spec().Length {
			t.Errorf("%s: imported DE39 length %d", path, n)
		}
	}
}
