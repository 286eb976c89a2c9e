package simulator

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// CardsFile is what `sim seed` writes and the other commands read: the
// programs, customers, balances and cards it provisioned. It is the one
// place where PANs, CVV2s and PINs appear in clear; they are test data.
type CardsFile struct {
	Version     int       `json:"version" yaml:"version"`
	Note        string    `json:"note" yaml:"note"`
	GeneratedAt time.Time `json:"generatedAt" yaml:"generatedAt"`
	// API is the REST base URL the data was provisioned through ("" when
	// provisioned in process).
	API       string           `json:"api,omitempty" yaml:"api,omitempty"`
	Partners  []Partner        `json:"partners" yaml:"partners"`
	Customers []SeededCustomer `json:"customers" yaml:"customers"`
	Cards     []Card           `json:"cards" yaml:"cards"`
}

// SeededCustomer is a customer with the balance its cards are issued under.
type SeededCustomer struct {
	PartnerID  string  `json:"partnerId" yaml:"partnerId"`
	ID         string  `json:"id" yaml:"id"`
	ExternalID string  `json:"externalId" yaml:"externalId"`
	Balance    Balance `json:"balance" yaml:"balance"`
}

const cardsFileNote = "TEST DATA: PANs, CVV2s and PINs of simulated cards. Never use real card data here."

// Partner returns the partner with id, or the first one when id is empty.
func (f *CardsFile) Partner(id string) (Partner, bool) {
	for _, p := range f.Partners {
		if id == "" || p.ID == id {
			return p, true
		}
	}
	return Partner{}, false
}

// Card returns the card called name.
func (f *CardsFile) Card(name string) (Card, bool) {
	for _, c := range f.Cards {
		if c.Name == name || c.ID == name {
			return c, true
		}
	}
	return Card{}, false
}

// Save writes f as YAML (.yaml, .yml) or JSON (anything else), readable by
// the owner only.
func (f *CardsFile) Save(path string) error {
	var b []byte
	var err error
	if isYAML(path) {
		b, err = yaml.Marshal(f)
	} else {
		b, err = json.MarshalIndent(f, "", "  ")
		b = append(b, '\n')
	}
	if err != nil {
		return fmt.Errorf("encoding cards file: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing cards file: %w", err)
	}
	return nil
}

// LoadCardsFile reads a cards file written by Save.
func LoadCardsFile(path string) (*CardsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cards file: %w", err)
	}
	f := &CardsFile{}
	if isYAML(path) {
		err = yaml.Unmarshal(b, f)
	} else {
		err = json.Unmarshal(b, f)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing cards file %s: %w", path, err)
	}
	if len(f.Partners) == 0 {
		return nil, fmt.Errorf("cards file %s names no partner", path)
	}
	return f, nil
}

func isYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}
