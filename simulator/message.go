package simulator

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/iso"
)

// Processing codes (DE3) the simulator sends.
const (
	PCPurchase       = "000000"
	PCCash           = "010000"
	PCRefund         = "200000"
	PCBalanceInquiry = "300000"
)

// Defaults of the acquiring side the simulator plays.
const (
	DefaultAcquirer     = "123456"
	DefaultTerminal     = "SIMTERM1"
	DefaultMerchant     = "SIMMERCHANT0001"
	DefaultMerchantName = "ANTACA SIMULATOR SHOP    BERLIN       DE"
	DefaultMCC          = "5411"
	DefaultPOSEntry     = "051"
)

// Original identifies the message a reversal or advice refers to (DE90).
type Original struct {
	MTI, STAN, TransmissionTime, Acquirer string
}

// DE90 formats the original data elements: MTI (4), STAN (6), transmission
// date and time (10), acquirer zero-filled to 11 digits, and 11 zeros for
// the forwarding institution.
func (o Original) DE90() string {
	return fmt.Sprintf("%-4s%-6s%-10s%011s%011d", o.MTI, o.STAN, o.TransmissionTime, o.Acquirer, 0)
}

// Txn is one transaction message as the simulator builds it. Empty fields
// are left out of the message except where noted.
type Txn struct {
	MTI            string
	PAN            string
	ProcessingCode string // six digits; default purchase
	Amount         int64  // DE4, minor units
	Currency       string // DE49, numeric ISO 4217
	Expiry         string // DE14, YYMM

	PINBlock []byte // DE52, 8 bytes

	MCC, POSEntry string // DE18, DE22; defaults when empty
	// Country replaces the merchant's country at the end of DE43.
	Country string

	// TransmissionTime is DE7 (MMDDhhmmss, UTC); now when empty.
	TransmissionTime string
	STAN             string // DE11
	RRN              string // DE37
	Acquirer         string // DE32; DefaultAcquirer when empty
	Terminal         string // DE41
	Merchant         string // DE42

	Original    *Original // DE90
	Replacement *int64    // DE95: the final amount after a partial reversal
}

// Key returns the transaction identity the switch uses for duplicates.
func (t *Txn) Key() string {
	return t.Acquirer + "|" + t.STAN + "|" + t.TransmissionTime + "|" + t.RRN
}

// AsOriginal is the DE90 a reversal or an advice of t carries.
func (t *Txn) AsOriginal() *Original {
	return &Original{MTI: t.MTI, STAN: t.STAN, TransmissionTime: t.TransmissionTime, Acquirer: t.Acquirer}
}

// fill completes the fields a network always sends.
func (t *Txn) fill(now time.Time) {
	if t.ProcessingCode == "" {
		t.ProcessingCode = PCPurchase
	}
	if t.TransmissionTime == "" {
		t.TransmissionTime = iso.TransmissionTime(now)
	}
	if t.Acquirer == "" {
		t.Acquirer = DefaultAcquirer
	}
	if t.Terminal == "" {
		t.Terminal = DefaultTerminal
	}
	if t.Merchant == "" {
		t.Merchant = DefaultMerchant
	}
	if t.MCC == "" {
		t.MCC = DefaultMCC
	}
	if t.POSEntry == "" {
		t.POSEntry = DefaultPOSEntry
	}
	if t.Currency == "" {
		t.Currency = "978"
	}
	if t.RRN == "" {
		t.RRN = NewRRN()
	}
}

// Build lays t out as a message of the network's profile. It fills DE7,
// DE32, DE37 and the merchant fields when empty (and records them in t, so
// that a later reversal can refer to them). DE11 is drawn from the network
// when empty.
func (n *Network) Build(t *Txn) (*iso8583.Message, error) {
	now := time.Now()
	t.fill(now)
	if t.STAN == "" {
		t.STAN = n.NextSTAN()
	}
	local := now.Local()
	f := map[int]string{
		2:  t.PAN,
		3:  t.ProcessingCode,
		4:  fmt.Sprintf("%012d", t.Amount),
		7:  t.TransmissionTime,
		11: t.STAN,
		12: local.Format("150405"),
		13: local.Format("0102"),
		18: t.MCC,
		22: t.POSEntry,
		32: t.Acquirer,
		37: t.RRN,
		41: t.Terminal,
		42: t.Merchant,
		43: merchantName(t.Country),
		49: t.Currency,
	}
	if t.Expiry != "" {
		f[14] = t.Expiry
	}
	if len(t.PINBlock) > 0 {
		f[52] = strings.ToUpper(hex.EncodeToString(t.PINBlock))
	}
	if t.Original != nil {
		f[90] = t.Original.DE90()
	}
	if t.Replacement != nil {
		f[95] = fmt.Sprintf("%012d%030d", *t.Replacement, 0)
	}
	m := n.NewMessage(t.MTI)
	for id, v := range f {
		if err := m.Field(id, v); err != nil {
			return nil, fmt.Errorf("building %s: setting DE%d: %w", t.MTI, id, err)
		}
	}
	return m, nil
}

// Answer is what the simulator reads from a response.
type Answer struct {
	MTI      string
	Code     string // DE39
	Approval string // DE38
	// Available is the available balance from DE54 (amount type 02).
	Available    int64
	HasAvailable bool
	Amount       int64 // DE4 as answered (the approved amount of a partial approval)
	STAN, RRN    string
}

// ParseAnswer reads a response.
func ParseAnswer(m *iso8583.Message) (Answer, error) {
	var a Answer
	var err error
	if a.MTI, err = m.GetMTI(); err != nil {
		return a, fmt.Errorf("reading response MTI: %w", err)
	}
	get := func(id int) string {
		s, _ := m.GetString(id)
		return s
	}
	a.Code, a.Approval, a.STAN, a.RRN = get(39), get(38), get(11), get(37)
	if s := get(4); s != "" {
		a.Amount, _ = strconv.ParseInt(s, 10, 64)
	}
	if s := get(54); s != "" {
		a.Available, a.HasAvailable = parseDE54(s)
	}
	return a, nil
}

// parseDE54 finds the available balance (amount type 02) among the 20
// character entries of DE54.
func parseDE54(s string) (int64, bool) {
	for i := 0; i+20 <= len(s); i += 20 {
		e := s[i : i+20]
		if e[2:4] != "02" {
			continue
		}
		v, err := strconv.ParseInt(e[8:20], 10, 64)
		if err != nil {
			return 0, false
		}
		if e[7] == 'D' {
			v = -v
		}
		return v, true
	}
	return 0, false
}

var rrnSeq atomic.Uint64

func init() { rrnSeq.Store(uint64(time.Now().UnixNano()/1e3) % 1e9) }

// NewRRN returns a retrieval reference number (DE37, 12 characters) unique
// within this process and unlikely to repeat across runs: the day of the
// year, then a counter.
func NewRRN() string {
	n := rrnSeq.Add(1)
	return fmt.Sprintf("%03d%09d", time.Now().UTC().YearDay(), n%1_000_000_000)
}

// MaskPAN shows at most the first 6 and last 4 digits of a PAN.
func MaskPAN(pan string) string { return iso.MaskPAN(pan) }

// RepeatMTI returns the retransmission MTI of mti (0100 -> 0101).
func RepeatMTI(mti string) string {
	if len(mti) != 4 {
		return mti
	}
	return mti[:3] + "1"
}

// merchantName is DE43 with the merchant's country (alpha-2) at its end.
func merchantName(country string) string {
	if len(country) != 2 {
		return DefaultMerchantName
	}
	return DefaultMerchantName[:38] + strings.ToUpper(country)
}
