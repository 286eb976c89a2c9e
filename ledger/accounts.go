package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
)

// Funding models of a partner program.
const (
	FundingDeposit = "DEPOSIT"
	FundingCredit  = "CREDIT"
)

// Partner is a card program: its BIN, currency and funding model
// (issuing.Partner).
type Partner = issuing.Partner

// CreatePartner creates a partner; ErrAlreadyExists when the id is taken,
// ErrBINInUse when another partner owns the BIN. The BIN is claimed first
// (HSETNX), so two partners can never route the same PANs.
func (l *Ledger) CreatePartner(ctx context.Context, p Partner) error {
	if p.FundingModel != FundingDeposit && p.FundingModel != FundingCredit {
		return fmt.Errorf("creating partner: unknown funding model %q", p.FundingModel)
	}
	if n, err := l.rdb.Exists(ctx, l.keys.Row(p.ID, "partners", p.ID)).Result(); err != nil {
		return fmt.Errorf("creating partner: %w", err)
	} else if n > 0 {
		return fmt.Errorf("creating partner: %w", ErrAlreadyExists)
	}
	claimed := false
	rangeClaimed := false
	if p.BIN != "" {
		// The BIN becomes the range of the partner's default program; no
		// other program's range may cover it.
		err := l.claim(ctx, p.ID, DefaultProgramID(p.ID), []authz.BINRange{{From: p.BIN, To: p.BIN}})
		if errors.Is(err, ErrRangeInUse) {
			return fmt.Errorf("creating partner: %w: %w", ErrBINInUse, err)
		}
		if err != nil {
			return err
		}
		rangeClaimed = true
	}
	unclaim := func() {
		if rangeClaimed {
			_ = l.claim(ctx, p.ID, DefaultProgramID(p.ID), nil)
		}
	}
	if p.BIN != "" {
		ok, err := l.rdb.HSetNX(ctx, l.keys.BINs(), p.BIN, p.ID).Result()
		if err != nil {
			return fmt.Errorf("claiming BIN: %w", err)
		}
		if !ok {
			owner, err := l.rdb.HGet(ctx, l.keys.BINs(), p.BIN).Result()
			if err != nil {
				return fmt.Errorf("claiming BIN: %w", err)
			}
			if owner != p.ID {
				unclaim()
				return fmt.Errorf("creating partner: %w", ErrBINInUse)
			}
		}
		claimed = ok
	}
	df := ""
	if p.DigitalFirst {
		df = "true"
	}
	err := l.run(ctx, "create_partner", p.ID, p.Name, p.BIN, p.Currency, p.FundingModel, df).Err()
	if err != nil {
		if claimed {
			l.rdb.HDel(ctx, l.keys.BINs(), p.BIN)
		}
		unclaim()
		return mapScriptError("creating partner", err)
	}
	pipe := l.rdb.Pipeline()
	pipe.SAdd(ctx, l.keys.Partners(), p.ID)
	pipe.HSet(ctx, l.keys.Index(), p.ID, p.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("registering partner: %w", err)
	}
	if _, err := l.ensureDefaultProgram(ctx, p.ID); err != nil {
		return fmt.Errorf("creating partner: %w", err)
	}
	return nil
}

// Partner reads a partner; ErrNotFound when absent.
func (l *Ledger) Partner(ctx context.Context, id string) (Partner, error) {
	m, err := l.row(ctx, id, "partners", id)
	if err != nil {
		return Partner{}, err
	}
	f := fields{what: "partner " + id}
	return Partner{
		ID: id, Name: m["name"], BIN: m["bin"], Currency: m["currency"], FundingModel: m["funding_model"],
		DigitalFirst: m["digital_first"] == "true", CreatedAt: f.time("created_at", m["created_at"]),
	}, f.err
}

// PartnerByBIN finds the partner whose program BIN prefixes pan (8, 7 then
// 6 digits).
func (l *Ledger) PartnerByBIN(ctx context.Context, pan string) (string, error) {
	p, _, err := l.RouteBIN(ctx, pan)
	return p, err
}

// RouteBIN is PartnerByBIN that also tells which BIN matched.
func (l *Ledger) RouteBIN(ctx context.Context, pan string) (partnerID, bin string, err error) {
	var fields []string
	for _, n := range []int{8, 7, 6} {
		if len(pan) >= n {
			fields = append(fields, pan[:n])
		}
	}
	if len(fields) == 0 {
		return "", "", fmt.Errorf("routing PAN: %w", ErrNotFound)
	}
	vals, err := l.rdb.HMGet(ctx, l.keys.BINs(), fields...).Result()
	if err != nil {
		return "", "", fmt.Errorf("routing PAN: %w", err)
	}
	for i, v := range vals {
		if s, ok := v.(string); ok && s != "" {
			return s, fields[i], nil
		}
	}
	return "", "", fmt.Errorf("routing PAN: %w", ErrNotFound)
}

// PartnerBalance is a partner's DEPOSIT or CREDIT balance.
type PartnerBalance struct {
	ID           string
	PartnerID    string
	Type         string
	Currency     string
	Available    int64
	Reserved     int64
	Settled      int64
	LowThreshold int64
	State        string
	// Version counts the row's changes: of two reads, the one with the
	// higher version is the later state.
	Version int64
}

// CreatePartnerBalance creates the partner's balance of a type and currency
// (one of each); ErrAlreadyExists when there is one.
func (l *Ledger) CreatePartnerBalance(ctx context.Context, partnerID, id, typ, currency string, lowThreshold int64) error {
	if typ != FundingDeposit && typ != FundingCredit {
		return fmt.Errorf("creating partner balance: unknown type %q", typ)
	}
	if err := l.run(ctx, "create_partner_balance", partnerID, id, typ, currency, lowThreshold).Err(); err != nil {
		return mapScriptError("creating partner balance", err)
	}
	return l.index(ctx, partnerID, id)
}

// BalanceChange reports a partner balance's available amount before and
// after an operation, so the caller can notify when it crosses its
// low-balance threshold.
type BalanceChange struct {
	PartnerBalanceID string
	Before, After    int64
	LowThreshold     int64
}

// CrossedBelow reports whether the change took the balance below its threshold.
func (c BalanceChange) CrossedBelow() bool {
	return c.PartnerBalanceID != "" && c.LowThreshold > 0 && c.Before >= c.LowThreshold && c.After < c.LowThreshold
}

// ReloadPartnerBalance adds money from outside to a partner balance.
// idemKey may be empty; a repeat with the same key changes nothing.
func (l *Ledger) ReloadPartnerBalance(ctx context.Context, partnerID, id string, amount int64, idemKey string) (BalanceChange, error) {
	v, err := l.run(ctx, "reload_partner_balance", partnerID, id, amount, idemKey, l.ttlMS()).Result()
	if err != nil {
		return BalanceChange{}, mapScriptError("reloading partner balance", err)
	}
	r := toStrings(v)
	f := fields{what: "reload_partner_balance reply"}
	c := BalanceChange{PartnerBalanceID: id, Before: f.int("before", r[0]), After: f.int("after", r[1]), LowThreshold: f.int("low_threshold", r[2])}
	return c, f.err
}

// PartnerBalance reads a partner balance.
func (l *Ledger) PartnerBalance(ctx context.Context, partnerID, id string) (PartnerBalance, error) {
	m, err := l.row(ctx, partnerID, "partner_balances", id)
	if err != nil {
		return PartnerBalance{}, err
	}
	f := fields{what: "partner balance " + id}
	b := PartnerBalance{
		ID: id, PartnerID: partnerID, Type: m["type"], Currency: m["currency"],
		Available: f.int("available", m["available"]), Reserved: f.int("reserved", m["reserved"]), Settled: f.int("settled", m["settled"]),
		LowThreshold: f.int("low_threshold", m["low_threshold"]), State: m["state"], Version: f.int("v", m["v"]),
	}
	return b, f.err
}

// PartnerBalanceIDs lists a partner's balance ids by type and currency.
func (l *Ledger) PartnerBalanceIDs(ctx context.Context, partnerID string) ([]string, error) {
	var ids []string
	for _, typ := range []string{FundingDeposit, FundingCredit} {
		keys, err := ScanKeys(ctx, l.rdb, l.keys.PartnerBalanceByCurrency(partnerID, typ, "*"), "string")
		if err != nil {
			return nil, fmt.Errorf("listing partner balances: %w", err)
		}
		for _, k := range keys {
			if id, err := l.rdb.Get(ctx, k).Result(); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Customer is a user of a partner program.
type Customer struct {
	ID, PartnerID, ExternalID, FirstName, LastName, Email, Phone, KYCStatus string
	// CreatedAt is when the customer was registered (zero for one not
	// read from the store).
	CreatedAt time.Time
}

// Customer reads a customer; ErrNotFound when absent.
func (l *Ledger) Customer(ctx context.Context, partnerID, id string) (Customer, error) {
	m, err := l.row(ctx, partnerID, "customers", id)
	if err != nil {
		return Customer{}, err
	}
	f := fields{what: "customer " + id}
	return Customer{
		ID: id, PartnerID: partnerID, ExternalID: m["external_id"], FirstName: m["first_name"], LastName: m["last_name"],
		Email: m["email"], Phone: m["phone"], KYCStatus: m["kyc_status"], CreatedAt: f.time("created_at", m["created_at"]),
	}, f.err
}

// CreateCustomer registers a customer with KYC status NONE.
func (l *Ledger) CreateCustomer(ctx context.Context, c Customer) error {
	err := l.run(ctx, "create_customer", c.PartnerID, c.ID, c.ExternalID, c.FirstName, c.LastName, c.Email, c.Phone).Err()
	if err != nil {
		return mapScriptError("creating customer", err)
	}
	return l.index(ctx, c.PartnerID, c.ID)
}

// SetKYC sets a customer's KYC status (NONE, PENDING, VERIFIED, REJECTED).
func (l *Ledger) SetKYC(ctx context.Context, partnerID, customerID, status string) error {
	return mapScriptError("setting KYC status", l.run(ctx, "set_kyc", partnerID, customerID, status).Err())
}

// UserBalance is a customer's balance in one currency.
type UserBalance struct {
	ID, PartnerID, CustomerID, Currency, State string
	Available, Held, Posted                    int64
}

// CreateUserBalance creates a balance; the customer's KYC must be VERIFIED.
func (l *Ledger) CreateUserBalance(ctx context.Context, partnerID, customerID, id, currency string) error {
	if err := l.run(ctx, "create_user_balance", partnerID, id, customerID, currency).Err(); err != nil {
		return mapScriptError("creating user balance", err)
	}
	return l.index(ctx, partnerID, id)
}

// ReloadUserBalance credits a user balance. In the CREDIT model it charges
// the partner credit balance and fails with ErrInsufficientPartnerFunds,
// changing nothing, when that is short.
func (l *Ledger) ReloadUserBalance(ctx context.Context, partnerID, id string, amount int64, idemKey string) (UserBalance, BalanceChange, error) {
	v, err := l.run(ctx, "reload_user_balance", partnerID, id, amount, idemKey, l.ttlMS()).Result()
	if err != nil {
		return UserBalance{}, BalanceChange{}, mapScriptError("reloading user balance", err)
	}
	r := toStrings(v)
	f := fields{what: "reload_user_balance reply"}
	c := BalanceChange{PartnerBalanceID: r[1], Before: f.int("before", r[2]), After: f.int("after", r[3]), LowThreshold: f.int("low_threshold", r[4])}
	if f.err != nil {
		return UserBalance{}, BalanceChange{}, f.err
	}
	b, err := l.UserBalance(ctx, partnerID, id)
	if err != nil {
		return UserBalance{}, BalanceChange{}, err
	}
	return b, c, nil
}

// UserBalance reads a user balance.
func (l *Ledger) UserBalance(ctx context.Context, partnerID, id string) (UserBalance, error) {
	m, err := l.row(ctx, partnerID, "user_balances", id)
	if err != nil {
		return UserBalance{}, err
	}
	b, _, err := userBalance(partnerID, id, m)
	return b, err
}

// userBalance reads a user balance row, and when it was created.
func userBalance(partnerID, id string, m map[string]string) (UserBalance, int64, error) {
	f := fields{what: "user balance " + id}
	b := UserBalance{
		ID: id, PartnerID: partnerID, CustomerID: m["customer_id"], Currency: m["currency"], State: m["state"],
		Available: f.int("available", m["available"]), Held: f.int("held", m["held"]), Posted: f.int("posted", m["posted"]),
	}
	return b, f.int("created_at", m["created_at"]), f.err
}

// CustomerBalances returns a customer's user balances, oldest first.
func (l *Ledger) CustomerBalances(ctx context.Context, partnerID, customerID string) ([]UserBalance, error) {
	ids, err := l.rdb.SMembers(ctx, l.keys.CustomerBalances(partnerID, customerID)).Result()
	if err != nil {
		return nil, fmt.Errorf("listing balances of %s: %w", customerID, err)
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, l.keys.Row(partnerID, "user_balances", id))
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("reading balances of %s: %w", customerID, err)
		}
	}
	out := make([]UserBalance, 0, len(ids))
	created := make(map[string]int64, len(ids))
	for i, id := range ids {
		m := cmds[i].Val()
		if len(m) == 0 {
			return nil, fmt.Errorf("balance %s of %s: %w", id, customerID, ErrNotFound)
		}
		b, at, err := userBalance(partnerID, id, m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		created[id] = at
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if created[a.ID] != created[b.ID] {
			return created[a.ID] < created[b.ID]
		}
		return a.ID < b.ID
	})
	return out, nil
}

// AddCustomerBalances records balances in a customer's balance set (a
// repair for balances created before the set existed; the balance script
// keeps it from then on). Ids without a balance row are left out.
func (l *Ledger) AddCustomerBalances(ctx context.Context, partnerID, customerID string, ids ...string) error {
	for _, id := range ids {
		b, err := l.UserBalance(ctx, partnerID, id)
		if errors.Is(err, ErrNotFound) || err == nil && b.CustomerID != customerID {
			continue
		}
		if err != nil {
			return err
		}
		if err := l.rdb.SAdd(ctx, l.keys.CustomerBalances(partnerID, customerID), id).Err(); err != nil {
			return fmt.Errorf("recording balance of %s: %w", customerID, err)
		}
	}
	return nil
}

// Funding returns the money that entered a partner's program from outside, per currency.
func (l *Ledger) Funding(ctx context.Context, partnerID, currency string) (int64, error) {
	s, err := l.rdb.HGet(ctx, l.keys.Row(partnerID, "funding", partnerID+":"+currency), "total_in").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("reading funding: %w", err)
	}
	f := fields{what: "funding " + partnerID + ":" + currency}
	n := f.int("total_in", s)
	return n, f.err
}

// BalanceCurrency is the currency of a user balance (issuing.Store).
func (l *Ledger) BalanceCurrency(ctx context.Context, partnerID, balanceID string) (string, error) {
	b, err := l.UserBalance(ctx, partnerID, balanceID)
	if err != nil {
		return "", err
	}
	return b.Currency, nil
}
