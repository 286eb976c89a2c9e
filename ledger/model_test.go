package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
)

// refModel is a plain Go reference of the ledger's money rules.
type refModel struct {
	deposit    bool
	partner    refPartner
	users      []refUser
	holds      map[string]*refHold
	fundingIn  int64
	holdOrder  []string
	balanceIDs []string
}

type refPartner struct{ available, reserved, settled int64 }
type refUser struct{ available, held, posted int64 }
type refHold struct {
	user                       int
	amount, captured, released int64
	state                      string
	created                    time.Time
}

func (m *refModel) reserve(u int, amount int64) string {
	user := &m.users[u]
	if m.deposit && m.partner.available < amount {
		return "INSUFFICIENT_PARTNER_FUNDS"
	}
	if user.available < amount {
		return "INSUFFICIENT_USER_FUNDS"
	}
	user.available -= amount
	user.held += amount
	if m.deposit {
		m.partner.available -= amount
		m.partner.reserved += amount
	}
	return "APPROVED"
}

func (m *refModel) capture(h *refHold, amount int64) error {
	if h.state != "OPEN" {
		return ledger.ErrHoldClosed
	}
	remaining := h.amount - h.captured - h.released
	if amount == 0 {
		amount = remaining
	}
	if amount > remaining {
		return ledger.ErrAmountExceedsHold
	}
	rest := remaining - amount
	u := &m.users[h.user]
	u.held -= remaining
	u.posted += amount
	u.available += rest
	if m.deposit {
		m.partner.reserved -= remaining
		m.partner.settled += amount
		m.partner.available += rest
	}
	h.captured += amount
	h.released += rest
	h.state = "CAPTURED"
	return nil
}

func (m *refModel) void(h *refHold, amount int64) error {
	if h.state != "OPEN" {
		return ledger.ErrHoldClosed
	}
	remaining := h.amount - h.captured - h.released
	if amount == 0 {
		amount = remaining
	}
	if amount > remaining {
		return ledger.ErrAmountExceedsHold
	}
	u := &m.users[h.user]
	u.held -= amount
	u.available += amount
	if m.deposit {
		m.partner.reserved -= amount
		m.partner.available += amount
	}
	h.released += amount
	if amount == remaining {
		h.state = "VOIDED"
	}
	return nil
}

// TestRandomizedAgainstModel runs thousands of random operations through
// the real scripts and through the reference model and compares balances,
// checking conservation of money along the way.
func TestRandomizedAgainstModel(t *testing.T) {
	for _, model := range []string{ledger.FundingDeposit, ledger.FundingCredit} {
		t.Run(model, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			clock := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
			rdb, prefix := ledgertest.MustRedis(t)
			l, err := ledger.New(rdb, ledger.Options{Prefix: prefix, Now: func() time.Time { return clock }})
			must(t, err)
			ctx := context.Background()
			p := newProgram(t, l, model, 50_000, 0)
			m := &refModel{deposit: model == ledger.FundingDeposit, holds: map[string]*refHold{}}
			m.partner.available = 50_000
			m.fundingIn = 50_000
			for range 3 {
				p.addBalance(t, 0)
			}
			m.users = make([]refUser, len(p.balances))

			const ops = 3000
			for i := range ops {
				u := rng.IntN(len(p.balances))
				switch op := rng.IntN(100); {
				case op < 15: // reload user
					amt := int64(rng.IntN(2_000) + 1)
					_, _, err := l.ReloadUserBalance(ctx, p.partner, p.balances[u], amt, "")
					if model == ledger.FundingCredit {
						if m.partner.available < amt {
							if !errors.Is(err, ledger.ErrInsufficientPartnerFunds) {
								t.Fatalf("op %d reload beyond credit: err = %v", i, err)
							}
							break
						}
						must(t, err)
						m.partner.available -= amt
					} else {
						must(t, err)
						m.fundingIn += amt
					}
					m.users[u].available += amt
				case op < 20: // reload partner
					amt := int64(rng.IntN(5_000) + 1)
					_, err := l.ReloadPartnerBalance(ctx, p.partner, p.pbal, amt, "")
					must(t, err)
					m.partner.available += amt
					m.fundingIn += amt
				case op < 55: // reserve
					amt := int64(rng.IntN(800) + 1)
					res, err := l.Reserve(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[u], Amount: amt, IdempotencyKey: fmt.Sprintf("op%d", i)})
					must(t, err)
					want := m.reserve(u, amt)
					if res.Reason != want {
						t.Fatalf("op %d reserve %d: got %s, want %s", i, amt, res.Reason, want)
					}
					if want == "APPROVED" {
						m.holds[res.HoldID] = &refHold{user: u, amount: amt, state: "OPEN", created: clock}
						m.holdOrder = append(m.holdOrder, res.HoldID)
					}
				case op < 70: // capture, full or partial
					id, h := m.pick(rng)
					if h == nil {
						break
					}
					var amt int64
					if rng.IntN(2) == 0 && h.amount > 1 {
						amt = int64(rng.IntN(int(h.amount))) + 1
					}
					_, err := l.Capture(ctx, p.partner, id, amt, false, "", "")
					want := m.capture(h, amt)
					if !errors.Is(err, want) && (err != nil || want != nil) {
						t.Fatalf("op %d capture: err %v, want %v", i, err, want)
					}
				case op < 85: // void, full or partial
					id, h := m.pick(rng)
					if h == nil {
						break
					}
					var amt int64
					if rng.IntN(2) == 0 && h.amount > 1 {
						amt = int64(rng.IntN(int(h.amount))) + 1
					}
					_, err := l.Void(ctx, p.partner, id, amt, false, "", "")
					want := m.void(h, amt)
					if !errors.Is(err, want) && (err != nil || want != nil) {
						t.Fatalf("op %d void %d: err %v, want %v", i, amt, err, want)
					}
				case op < 93: // refund
					amt := int64(rng.IntN(500) + 1)
					_, err := l.Refund(ctx, ledger.Reservation{PartnerID: p.partner, BalanceID: p.balances[u], Amount: amt, IdempotencyKey: fmt.Sprintf("rf%d", i)})
					must(t, err)
					m.users[u].available += amt
					m.fundingIn += amt
				default: // time passes; expire holds older than 10 minutes
					clock = clock.Add(time.Duration(rng.IntN(8)+1) * time.Minute)
					n, err := l.ExpireHolds(ctx, p.partner, 10*time.Minute, 10_000)
					must(t, err)
					want := 0
					for _, id := range m.holdOrder {
						h := m.holds[id]
						if h.state == "OPEN" && !h.created.After(clock.Add(-10*time.Minute)) {
							must(t, m.void(h, 0))
							h.state = "EXPIRED"
							want++
						}
					}
					if n != want {
						t.Fatalf("op %d expired %d holds, want %d", i, n, want)
					}
				}
				if i%250 == 0 {
					m.compare(t, p, i)
					p.checkMoney(t)
				}
			}
			m.compare(t, p, ops)
			p.checkMoney(t)
			in, err := l.Funding(ctx, p.partner, "EUR")
			must(t, err)
			if in != m.fundingIn {
				t.Fatalf("funding in = %d, model %d", in, m.fundingIn)
			}
		})
	}
}

func (m *refModel) pick(rng *rand.Rand) (string, *refHold) {
	if len(m.holdOrder) == 0 {
		return "", nil
	}
	id := m.holdOrder[rng.IntN(len(m.holdOrder))]
	return id, m.holds[id]
}

func (m *refModel) compare(t *testing.T, p *program, op int) {
	t.Helper()
	for i := range m.users {
		got, want := p.user(t, i), m.users[i]
		if got.Available != want.available || got.Held != want.held || got.Posted != want.posted {
			t.Fatalf("after op %d user %d: got %d/%d/%d, model %d/%d/%d", op, i,
				got.Available, got.Held, got.Posted, want.available, want.held, want.posted)
		}
	}
	pb := p.partnerBalance(t)
	if pb.Available != m.partner.available || pb.Reserved != m.partner.reserved || pb.Settled != m.partner.settled {
		t.Fatalf("after op %d partner: got %d/%d/%d, model %d/%d/%d", op,
			pb.Available, pb.Reserved, pb.Settled, m.partner.available, m.partner.reserved, m.partner.settled)
	}
}
