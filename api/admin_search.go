package api

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
)

// Read-only admin queries for finding customers and looking at a card's
// activity. They read Postgres (the durable copy the write-behind keeps,
// a few milliseconds behind Redis) because Redis has no index by name,
// e-mail or last 4 digits; none of them changes anything.

// paging reads ?page= (from 1) and ?pageSize= (1 to 100, default 20).
func paging(c *call) (page, size int, err error) {
	page, size = 1, 20
	q := c.r.URL.Query()
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 || page > 100_000 {
			return 0, 0, invalid("page", "page must be an integer from 1")
		}
	}
	if v := q.Get("pageSize"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > 100 {
			return 0, 0, invalid("pageSize", "pageSize must be an integer from 1 to 100")
		}
	}
	return page, size, nil
}

var last4RE = regexp.MustCompile(`^[0-9]{4}$`)

// likeEscape makes s a literal inside a LIKE pattern.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// GET /admin/customers?q=&page=&pageSize=: customers whose id or external
// id is q, whose name or e-mail contains q (case-insensitive), or, when q
// is 4 digits, who hold a card ending in q. Without q: every customer.
// Ordered by last name, first name, id.
func (s *Server) searchCustomers(c *call) (int, any, error) {
	page, size, err := paging(c)
	if err != nil {
		return 0, nil, err
	}
	q := strings.TrimSpace(c.r.URL.Query().Get("q"))
	if len([]rune(q)) > 100 {
		return 0, nil, invalid("q", "q is at most 100 characters")
	}
	last4 := ""
	if last4RE.MatchString(q) {
		last4 = q
	}
	rows, err := s.cfg.DB.Query(c.ctx, `
		SELECT c.id, c.partner_id, c.external_id, c.first_name, c.last_name, c.email, c.phone, c.kyc_status, c.created_at
		FROM customers c
		WHERE $1 = ''
		   OR c.id = $1 OR c.external_id = $1
		   OR `+s.cfg.DB.ILike("c.email", "$2")+` OR `+s.cfg.DB.ILike("(c.first_name || ' ' || c.last_name)", "$2")+`
		   OR ($3 <> '' AND EXISTS (SELECT 1 FROM cards k WHERE k.customer_id = c.id AND k.last4 = $3 AND k.status <> 'REMOVED'))
		ORDER BY lower(c.last_name), lower(c.first_name), c.id
		LIMIT $4 OFFSET $5`, q, "%"+likeEscape(q)+"%", last4, size+1, (page-1)*size)
	if err != nil {
		return 0, nil, fmt.Errorf("searching customers: %w", err)
	}
	defer rows.Close()
	out := []customerView{}
	for rows.Next() {
		var v customerView
		var created string
		if err := rows.Scan(&v.ID, &v.PartnerID, &v.ExternalID, &v.FirstName, &v.LastName, &v.Email, &v.Phone, &v.KYCStatus, &created); err != nil {
			return 0, nil, fmt.Errorf("searching customers: %w", err)
		}
		v.CreatedAt = msTime(created)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("searching customers: %w", err)
	}
	more := len(out) > size
	if more {
		out = out[:size]
	}
	return http.StatusOK, map[string]any{"customers": out, "page": page, "pageSize": size, "hasMore": more}, nil
}

// adminCard is a card as the administration sees it: never the PAN, only
// its first 6 and last 4 digits.
type adminCard struct {
	issuing.Card
	PartnerID  string `json:"partnerId"`
	First6     string `json:"first6"`
	MaskedPAN  string `json:"maskedPan"`
	LockSource string `json:"lockSource,omitempty"`
	Currency   string `json:"currency"`
}

// GET /admin/customers/{customerId}/cards: every card of the customer, of
// all their balances, ordered by id.
func (s *Server) customerCards(c *call) (int, any, error) {
	pid, cards, err := s.customerCardsOf(c)
	if err != nil {
		return 0, nil, err
	}
	out := make([]adminCard, 0, len(cards))
	for _, k := range cards {
		first6 := k.raw.BIN
		if len(first6) > 6 {
			first6 = first6[:6]
		}
		out = append(out, adminCard{Card: k.view, PartnerID: pid, First6: first6, MaskedPAN: first6 + "******" + k.view.Last4,
			LockSource: k.raw.LockSource, Currency: k.balance.Currency})
	}
	return http.StatusOK, map[string]any{"cards": out}, nil
}

// authorizationTypes are the journal entries an authorization, an
// advice, a reversal or a refund leaves.
var authorizationTypes = []string{"reserve", "financial", "decline", "void", "capture", "force_post", "refund", "late_cancel", "pin_wrong"}

type authorizationView struct {
	Seq      int64        `json:"seq"`
	At       time.Time    `json:"at"`
	Type     string       `json:"type"`
	Reason   authz.Reason `json:"reason"`
	Approved bool         `json:"approved"`
	MTI      string       `json:"mti,omitempty"`
	Amount   int64        `json:"amount"`
	Currency string       `json:"currency,omitempty"`
	STAN     string       `json:"stan,omitempty"`
	RRN      string       `json:"rrn,omitempty"`
	Terminal string       `json:"terminal,omitempty"`
	Merchant string       `json:"merchant,omitempty"`
	MCC      string       `json:"mcc,omitempty"`
}

type holdView struct {
	ID           string     `json:"id"`
	State        string     `json:"state"`
	Currency     string     `json:"currency"`
	Requested    int64      `json:"requested"`
	Amount       int64      `json:"amount"`
	Captured     int64      `json:"captured"`
	Released     int64      `json:"released"`
	ApprovalCode string     `json:"approvalCode,omitempty"`
	Reference    string     `json:"reference,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	ClosedAt     *time.Time `json:"closedAt,omitempty"`
}

// GET /admin/cards/{cardId}/authorizations?page=&pageSize=: the card's
// journal entries of authorizations, approved or declined (with the
// machine-readable reason), newest first, and its holds (newest 50).
// Amounts are the ones the message asked for; a hold shows what was
// approved, captured and released.
func (s *Server) cardAuthorizations(c *call) (int, any, error) {
	page, size, err := paging(c)
	if err != nil {
		return 0, nil, err
	}
	card, err := c.card()
	if err != nil {
		return 0, nil, err
	}
	rows, err := s.cfg.DB.Query(c.ctx, `
		SELECT seq, type, reason, ts_ms, meta
		FROM journal
		WHERE partner_id = $1 AND meta->>'card' = $2 AND `+s.cfg.DB.In("type", "$3")+`
		ORDER BY seq DESC LIMIT $4 OFFSET $5`, card.PartnerID, card.ID, authorizationTypes, size+1, (page-1)*size)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the card's journal: %w", err)
	}
	defer rows.Close()
	auths := []authorizationView{}
	for rows.Next() {
		var v authorizationView
		var ts int64
		var meta []byte
		if err := rows.Scan(&v.Seq, &v.Type, &v.Reason, &ts, &meta); err != nil {
			return 0, nil, fmt.Errorf("reading the card's journal: %w", err)
		}
		var m struct {
			MTI, Currency, STAN, RRN, Terminal, Merchant, MCC string
			Amount                                            int64
		}
		_ = json.Unmarshal(meta, &m) // an entry without context (NULL meta) still lists
		v.At, v.Approved = time.UnixMilli(ts).UTC(), v.Reason.Approved()
		v.MTI, v.Amount, v.Currency, v.STAN, v.RRN = m.MTI, m.Amount, m.Currency, m.STAN, m.RRN
		v.Terminal, v.Merchant, v.MCC = m.Terminal, m.Merchant, m.MCC
		auths = append(auths, v)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("reading the card's journal: %w", err)
	}
	more := len(auths) > size
	if more {
		auths = auths[:size]
	}
	hrows, err := s.cfg.DB.Query(c.ctx, `
		SELECT id, state, currency, requested, amount, captured, released, approval_code, reference, created_ms, closed_ms
		FROM holds WHERE card_id = $1 ORDER BY created_ms DESC, id LIMIT 50`, card.ID)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the card's holds: %w", err)
	}
	defer hrows.Close()
	holds := []holdView{}
	for hrows.Next() {
		var h holdView
		var created, closed int64
		if err := hrows.Scan(&h.ID, &h.State, &h.Currency, &h.Requested, &h.Amount, &h.Captured, &h.Released,
			&h.ApprovalCode, &h.Reference, &created, &closed); err != nil {
			return 0, nil, fmt.Errorf("reading the card's holds: %w", err)
		}
		h.CreatedAt = time.UnixMilli(created).UTC()
		if closed > 0 {
			t := time.UnixMilli(closed).UTC()
			h.ClosedAt = &t
		}
		holds = append(holds, h)
	}
	if err := hrows.Err(); err != nil {
		return 0, nil, fmt.Errorf("reading the card's holds: %w", err)
	}
	return http.StatusOK, map[string]any{"authorizations": auths, "holds": holds, "page": page, "pageSize": size, "hasMore": more}, nil
}

type reasonCount struct {
	Reason   authz.Reason `json:"reason"`
	Approved bool         `json:"approved"`
	Count    int64        `json:"count"`
}

// GET /admin/authorizations/stats?minutes=60: authorizations (0100/0200
// answers that reached the ledger) of the last minutes (1 to 1440), by
// reason, most frequent first.
func (s *Server) authorizationStats(c *call) (int, any, error) {
	minutes := 60
	if v := c.r.URL.Query().Get("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1440 {
			return 0, nil, invalid("minutes", "minutes must be an integer from 1 to 1440")
		}
		minutes = n
	}
	until := s.now().UTC().Truncate(time.Millisecond)
	since := until.Add(-time.Duration(minutes) * time.Minute)
	rows, err := s.cfg.DB.Query(c.ctx, `
		SELECT reason, count(*) FROM journal
		WHERE ts_ms >= $1 AND type IN ('reserve', 'financial', 'decline')
		GROUP BY reason`, since.UnixMilli())
	if err != nil {
		return 0, nil, fmt.Errorf("counting authorizations: %w", err)
	}
	defer rows.Close()
	out := []reasonCount{}
	var approved, declined int64
	for rows.Next() {
		var r reasonCount
		if err := rows.Scan(&r.Reason, &r.Count); err != nil {
			return 0, nil, fmt.Errorf("counting authorizations: %w", err)
		}
		r.Approved = r.Reason.Approved()
		if r.Approved {
			approved += r.Count
		} else {
			declined += r.Count
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("counting authorizations: %w", err)
	}
	slices.SortFunc(out, func(a, b reasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(string(a.Reason), string(b.Reason)))
	})
	return http.StatusOK, map[string]any{"since": since, "until": until, "approved": approved, "declined": declined, "byReason": out}, nil
}
