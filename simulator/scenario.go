package simulator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Scenario is one scenario file: a named list of steps run in order. A
// step either sends a network message (it has an mti, or repeats or
// duplicates an earlier message) or performs an issuer action (action).
//
// Values can refer to earlier steps with ${step.field}; a reversal names
// its original with original: <step>, which builds DE90 from that step's
// MTI, STAN, DE7 and DE32 and reuses its RRN. See scenarios/README.md.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Steps       []Step `yaml:"steps"`
	// File is where the scenario was read from.
	File string `yaml:"-"`
}

// Step is one step of a scenario. Every field is text so that it can hold
// ${step.field} references; numbers are parsed after substitution.
type Step struct {
	Name   string `yaml:"name"`
	Action string `yaml:"action"`
	// As names the step's result for later steps (default: the step name).
	As string `yaml:"as"`

	// Issuer action arguments.
	Partner  string `yaml:"partner"`
	Customer string `yaml:"customer"`
	Balance  string `yaml:"balance"`
	Card     string `yaml:"card"`
	Amount   string `yaml:"amount"`
	Reason   string `yaml:"reason"`
	PIN      string `yaml:"pin"`
	Currency string `yaml:"currency"`
	Funding  string `yaml:"funding"`
	Funds    string `yaml:"funds"`
	BIN      string `yaml:"bin"`
	Verified string `yaml:"verified"`
	// LastName of create_customer and new_account (default "User"): the
	// simulator's KYC provider decides by it.
	LastName string `yaml:"lastName"`
	Duration string `yaml:"duration"`
	// DigitalFirst "false" creates a program not registered for digital
	// first (create_partner; default true).
	DigitalFirst string `yaml:"digitalFirst"`
	// Source (NETWORK, ACQUIRER) and Reference of external_lock.
	Source    string `yaml:"source"`
	Reference string `yaml:"reference"`
	// KeepOld "true": replace keeps the old plastic working until the new
	// one is activated.
	KeepOld string `yaml:"keepOld"`
	// Controls is a card's spend controls as JSON (set_controls).
	Controls string `yaml:"controls"`
	// The decisioning backend of partner_backend: its stand-in policy
	// (and amount), decision timeout, latency, failure and garbage shares,
	// and the amount above which it declines.
	StandIn         string `yaml:"standIn"`
	StandInAmount   string `yaml:"standInAmount"`
	DecisionTimeout string `yaml:"decisionTimeout"`
	Latency         string `yaml:"latency"`
	Fail            string `yaml:"fail"`
	Garbage         string `yaml:"garbage"`
	DeclineOver     string `yaml:"declineOver"`

	// Network message fields.
	MTI         string `yaml:"mti"`
	Txn         string `yaml:"txn"`        // purchase, cash, refund, balance
	Processing  string `yaml:"processing"` // DE3 as six digits (overrides txn)
	Expiry      string `yaml:"expiry"`     // DE14: YYMM, "card" (default) or "none"
	PINBlock    string `yaml:"pinBlock"`   // DE52 as 16 hex digits
	PAN         string `yaml:"pan"`        // overrides the card's PAN; "unknown" for an unissued one
	Original    string `yaml:"original"`   // step whose message this one reverses or completes (DE90)
	Replacement string `yaml:"replacement"`
	Repeat      string `yaml:"repeat"`    // resend that step's message as a repeat (0101, 0401 ...)
	Duplicate   string `yaml:"duplicate"` // resend that step's message unchanged
	RRN         string `yaml:"rrn"`
	STAN        string `yaml:"stan"`
	Acquirer    string `yaml:"acquirer"`
	MCC         string `yaml:"mcc"`
	Country     string `yaml:"country"` // the merchant's country at the end of DE43 (alpha-2)
	Entry       string `yaml:"entry"`   // DE22 POS entry mode
	Timeout     string `yaml:"timeout"`
	// File is the file update of an 0302: add (lock with reason) or
	// delete (unlock).
	File string `yaml:"file"`

	Expect Expect `yaml:"expect"`

	// Line is the step's line in its file, for messages.
	Line int `yaml:"-"`
}

// Expect lists what a step must produce; empty fields are not checked.
type Expect struct {
	// Code is DE39 as written in the cmf profile (iso/README.md); on an
	// iso87 link it is translated, or taken from Reason when ambiguous.
	Code string `yaml:"code"`
	// Reason is the internal reason (authz.Reason), translated to the
	// link's profile.
	Reason string `yaml:"reason"`
	// Approval is "present", "absent" or the name of an earlier step whose
	// approval code (DE38) this answer must repeat.
	Approval string `yaml:"approval"`
	// Available is DE54's available balance for a message, the balance's
	// available amount for check_balance.
	Available string `yaml:"available"`
	Held      string `yaml:"held"`
	// Amount is DE4 as answered.
	Amount string `yaml:"amount"`
	// Lock is DE120 of an 0312: the card's lock reason in force after a
	// file update ("none" when the answer carries no DE120).
	Lock string `yaml:"lock"`
	// Status and Error expect an issuer action to be refused with this
	// HTTP status and error code.
	Status string `yaml:"status"`
	Error  string `yaml:"error"`
	// KYC is the customer's KYC status start_kyc answers or wait_kyc
	// waits for (NONE, PENDING, VERIFIED, REJECTED).
	KYC string `yaml:"kyc"`
}

// LoadScenarios reads scenario files; a directory contributes its *.yaml
// and *.yml files in name order.
func LoadScenarios(paths ...string) ([]*Scenario, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading scenarios: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("reading scenarios: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() && isYAML(e.Name()) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	if len(files) == 0 {
		return nil, errors.New("no scenario files given")
	}
	var out []*Scenario
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading scenario: %w", err)
		}
		s, err := ParseScenario(f, b)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseScenario parses one scenario file and checks its structure:
// unknown keys, steps without a kind, references to steps not yet run.
func ParseScenario(name string, b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	s := &Scenario{File: name}
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil {
		setLines(s, &root)
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	if len(s.Steps) == 0 {
		return nil, fmt.Errorf("scenario %s: no steps", name)
	}
	seen := map[string]bool{}
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Name == "" {
			st.Name = fmt.Sprintf("step%d", i+1)
		}
		if st.As == "" {
			st.As = st.Name
		}
		where := fmt.Sprintf("scenario %s: step %d %q (line %d)", name, i+1, st.Name, st.Line)
		kinds := 0
		for _, k := range []string{st.Action, st.MTI, st.Repeat, st.Duplicate} {
			if k != "" {
				kinds++
			}
		}
		if st.Action != "" && kinds > 1 || kinds == 0 {
			return nil, fmt.Errorf("%s: give either action, or mti / repeat / duplicate", where)
		}
		if st.Action != "" && !slices.Contains(actionNames, st.Action) {
			return nil, fmt.Errorf("%s: unknown action %q (one of %s)", where, st.Action, strings.Join(actionNames, ", "))
		}
		for _, ref := range []string{st.Original, st.Repeat, st.Duplicate} {
			if ref != "" && !seen[ref] {
				return nil, fmt.Errorf("%s: refers to step %q, which does not run before it", where, ref)
			}
		}
		seen[st.As] = true
		seen[st.Name] = true
	}
	return s, nil
}

// setLines records each step's line from the YAML node tree.
func setLines(s *Scenario, root *yaml.Node) {
	if len(root.Content) == 0 {
		return
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "steps" {
			continue
		}
		for j, n := range doc.Content[i+1].Content {
			if j < len(s.Steps) {
				s.Steps[j].Line = n.Line
			}
		}
	}
}

var refPattern = regexp.MustCompile(`\$\{([A-Za-z0-9_\-]+)\.([A-Za-z0-9_]+)\}`)

// interpolate replaces ${step.field} in every text field of st.
func interpolate(st *Step, vals map[string]map[string]string) error {
	var firstErr error
	replace := func(s string) string {
		return refPattern.ReplaceAllStringFunc(s, func(m string) string {
			sub := refPattern.FindStringSubmatch(m)
			fields, ok := vals[sub[1]]
			if !ok {
				if firstErr == nil {
					firstErr = fmt.Errorf("reference %s: no earlier step %q", m, sub[1])
				}
				return m
			}
			v, ok := fields[sub[2]]
			if !ok {
				if firstErr == nil {
					firstErr = fmt.Errorf("reference %s: step %q has no %q (has %s)", m, sub[1], sub[2], strings.Join(sortedKeys(fields), ", "))
				}
				return m
			}
			return v
		})
	}
	walkStrings(reflect.ValueOf(st).Elem(), replace)
	return firstErr
}

func walkStrings(v reflect.Value, f func(string) string) {
	for i := 0; i < v.NumField(); i++ {
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			if fv.CanSet() && strings.Contains(fv.String(), "${") {
				fv.SetString(f(fv.String()))
			}
		case reflect.Struct:
			walkStrings(fv, f)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
