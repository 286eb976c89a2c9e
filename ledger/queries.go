package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Reads across rows and partners, for the API's listings, operators' tools
// and the simulator's bureau. Those that SCAN read every row of a table,
// one partner after another: not for the hot path, and not an atomic
// snapshot while authorizations run.

// row reads one row as a map of columns; ErrNotFound when absent.
func (l *Ledger) row(ctx context.Context, partnerID, table, id string) (map[string]string, error) {
	m, err := l.rdb.HGetAll(ctx, l.keys.Row(partnerID, table, id)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading %s %q: %w", table, id, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("reading %s %q: %w", table, id, ErrNotFound)
	}
	return m, nil
}

// scanRows reads every row of a partner's table.
func (l *Ledger) scanRows(ctx context.Context, partnerID, table string) ([]map[string]string, error) {
	keys, err := ScanKeys(ctx, l.rdb, globEscape(l.keys.Row(partnerID, table, ""))+"*", "hash")
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", table, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading %s: %w", table, err)
	}
	out := make([]map[string]string, 0, len(keys))
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 { // gone since the scan
			out = append(out, m)
		}
	}
	return out, nil
}

// globEscape escapes the characters SCAN's MATCH treats as patterns.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// PartnerIDs lists the ids of every partner, sorted.
func (l *Ledger) PartnerIDs(ctx context.Context) ([]string, error) {
	ids, err := l.rdb.SMembers(ctx, l.keys.Partners()).Result()
	if err != nil {
		return nil, fmt.Errorf("listing partners: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Partners reads every partner, by id.
func (l *Ledger) Partners(ctx context.Context) ([]Partner, error) {
	ids, err := l.PartnerIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Partner, 0, len(ids))
	for _, id := range ids {
		p, err := l.Partner(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // registered, its row not written yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Summary is what the balances of one currency hold, over every partner.
type Summary struct {
	Currency string
	// Users is the sum of all user balances (available + held).
	Users int64
	// Partners is the sum of all partner balances (available + reserved).
	Partners int64
}

// Summaries sums the user and partner balances of every partner per
// currency, by currency.
func (l *Ledger) Summaries(ctx context.Context) ([]Summary, error) {
	ids, err := l.PartnerIDs(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string]*Summary{}
	at := func(cur string) *Summary {
		if by[cur] == nil {
			by[cur] = &Summary{Currency: cur}
		}
		return by[cur]
	}
	for _, pid := range ids {
		rows, err := l.scanRows(ctx, pid, "user_balances")
		if err != nil {
			return nil, err
		}
		for _, m := range rows {
			b, _, err := userBalance(pid, m["id"], m)
			if err != nil {
				return nil, err
			}
			if b.Currency != "" {
				at(b.Currency).Users += b.Available + b.Held
			}
		}
		pbIDs, err := l.PartnerBalanceIDs(ctx, pid)
		if err != nil {
			return nil, err
		}
		for _, id := range pbIDs {
			b, err := l.PartnerBalance(ctx, pid, id)
			if err != nil {
				return nil, err
			}
			at(b.Currency).Partners += b.Available + b.Reserved
		}
	}
	out := make([]Summary, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(a.Currency, b.Currency) })
	return out, nil
}

// ScanCards returns the cards of every partner that keep reports true
// (every card when keep is nil), by partner and id.
func (l *Ledger) ScanCards(ctx context.Context, keep func(Card) bool) ([]Card, error) {
	ids, err := l.PartnerIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Card
	for _, pid := range ids {
		rows, err := l.scanRows(ctx, pid, "cards")
		if err != nil {
			return nil, err
		}
		var cards []Card
		for _, m := range rows {
			c, err := cardFromMap(pid, m)
			if err != nil {
				return nil, err
			}
			if keep == nil || keep(c) {
				cards = append(cards, c)
			}
		}
		slices.SortFunc(cards, func(a, b Card) int { return cmp.Compare(a.ID, b.ID) })
		out = append(out, cards...)
	}
	return out, nil
}
