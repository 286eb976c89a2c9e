package ledger

import (
	"strconv"
	"strings"
)

// Keys names the Redis keys of one deployment. Every key of a partner shares
// the hash tag {p:<partnerId>}, so a script touches a single slot. See
// docs/ledger.md for the layout.
type Keys struct {
	Prefix string
}

// DefaultPrefix is the key prefix of a deployment that sets none.
const DefaultPrefix = "antaca"

// Tables lists the row tables, in the order recovery restores them.
var Tables = []string{"partners", "programs", "partner_balances", "customers", "user_balances", "cards", "holds", "funding"}

// NumericColumns are the integer columns of each table; every other column is text.
var NumericColumns = map[string][]string{
	"partners":         {},
	"programs":         {},
	"partner_balances": {"available", "reserved", "settled", "low_threshold"},
	"customers":        {},
	"user_balances":    {"available", "held", "posted"},
	"cards":            {"lock_reason", "pin_tries"},
	"holds":            {"amount", "captured", "released", "created_ms", "closed_ms", "requested", "approved", "available_after"},
	"funding":          {"total_in"},
}

// Columns lists the columns of each table besides id, partner_id and v.
var Columns = map[string][]string{
	"partners": {"name", "bin", "currency", "funding_model", "created_at", "digital_first"},
	"programs": {"name", "currency", "bin_ranges", "card_types", "digital_first", "time_zone", "controls",
		"remote_url", "decision_timeout_ms", "stand_in", "created_at", "remote_secret"},
	"partner_balances": {"type", "currency", "available", "reserved", "settled", "low_threshold", "state", "created_at"},
	"customers":        {"external_id", "first_name", "last_name", "email", "phone", "kyc_status", "created_at"},
	"user_balances":    {"customer_id", "currency", "available", "held", "posted", "state", "created_at"},
	"cards": {"customer_id", "balance_id", "type", "status", "lock_reason", "lock_source", "pan_enc", "pan_hash",
		"bin", "last4", "expiry", "cvv_enc", "pin_verifier", "pin_tries", "copy_of", "delivery", "created_at",
		"delivery_state", "lock_ref", "replaces", "replaced_by", "program_id", "controls"},
	"holds": {"balance_id", "card_id", "partner_balance_id", "currency", "amount", "captured", "released", "state",
		"idem_key", "approval_code", "txn_type", "created_ms", "closed_ms", "reference",
		"origin", "requested", "approved", "available_after", "spend"},
	"funding": {"currency", "total_in"},
}

// Tag is the hash-tagged base of every key of a partner.
func (k Keys) Tag(partnerID string) string { return k.Prefix + ":{p:" + partnerID + "}" }

// Row is the hash holding one row.
func (k Keys) Row(partnerID, table, id string) string {
	return k.Tag(partnerID) + ":" + table + ":" + id
}

// PAN maps a PAN lookup token to a card id.
func (k Keys) PAN(partnerID, panHash string) string { return k.Tag(partnerID) + ":pan:" + panHash }

// PartnerBalanceByCurrency names the partner balance of a type and currency.
func (k Keys) PartnerBalanceByCurrency(partnerID, typ, currency string) string {
	return k.Tag(partnerID) + ":pbalcur:" + typ + ":" + currency
}

// BalanceCards is the set of card ids issued under a user balance.
func (k Keys) BalanceCards(partnerID, balanceID string) string {
	return k.Tag(partnerID) + ":balcards:" + balanceID
}

// CustomerBalances is the set of user balance ids of a customer.
func (k Keys) CustomerBalances(partnerID, customerID string) string {
	return k.Tag(partnerID) + ":custbals:" + customerID
}

// Velocity counts a card's authorizations in one window (velocity.lua);
// index is the window's number since the epoch (now / window).
func (k Keys) Velocity(partnerID, cardID string, index int64) string {
	return k.Tag(partnerID) + ":vel:" + cardID + ":" + strconv.FormatInt(index, 10)
}

// Idem holds the stored answer for an idempotency key.
func (k Keys) Idem(partnerID, key string) string { return k.Tag(partnerID) + ":idem:" + key }

// Reference maps a hold's second key (RRN + card id) to the hold id.
func (k Keys) Reference(partnerID, ref string) string { return k.Tag(partnerID) + ":ref:" + ref }

// OpenHolds is the zset of open holds by creation time.
func (k Keys) OpenHolds(partnerID string) string { return k.Tag(partnerID) + ":holds:open" }

// Seq is the partner's journal sequence counter.
func (k Keys) Seq(partnerID string) string { return k.Tag(partnerID) + ":seq" }

// Journal is the partner's journal stream.
func (k Keys) Journal(partnerID string) string { return k.Tag(partnerID) + ":journal" }

// Partners is the set of partner ids.
func (k Keys) Partners() string { return k.Prefix + ":partners" }

// Ranges maps every program's BIN ranges ("from-to") to "partner/program":
// the routing table every switch keeps in process.
func (k Keys) Ranges() string { return k.Prefix + ":ranges" }

// Programs is the set of a partner's program ids.
func (k Keys) Programs(partnerID string) string { return k.Tag(partnerID) + ":programs" }

// Spend is the counter (amount, count) of a card's spend-control window.
func (k Keys) Spend(partnerID, cardID, windowID string) string {
	return k.Tag(partnerID) + ":spend:" + cardID + ":" + windowID
}

// BINs maps a program BIN to its partner.
func (k Keys) BINs() string { return k.Prefix + ":bins" }

// Index maps customer, balance, card and hold ids to their partner.
func (k Keys) Index() string { return k.Prefix + ":index" }

// Ready is set while Redis holds the full state.
func (k Keys) Ready() string { return k.Prefix + ":ready" }

// Pattern matches every key of the deployment, for tests and wipes.
func (k Keys) Pattern() string { return k.Prefix + ":*" }

// PartnerOfStream extracts the partner id from a journal stream key.
func (k Keys) PartnerOfStream(stream string) (string, bool) {
	rest, ok := strings.CutPrefix(stream, k.Prefix+":{p:")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "}:journal")
	return id, ok
}
