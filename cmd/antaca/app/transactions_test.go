package app_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
)

// TestTransactionsListedRightAfterISO answers 0100s on ISO and lists the
// card's transactions over REST at once, with no sleep: every approval and
// every decline is there, with DE39 exactly as answered, in both answer
// modes (in "redis" mode approvals too are answered before Postgres has
// them; the listing waits for the write-behind) and both profiles.
func TestTransactionsListedRightAfterISO(t *testing.T) {
	for _, tt := range []struct{ profile, answerAfter string }{{"cmf", "postgres"}, {"iso87", "redis"}} {
		t.Run(tt.profile+"/"+tt.answerAfter, func(t *testing.T) {
			h := startApp(t, func(c *app.Config) {
				c.ISOProfile, c.AnswerAfter = tt.profile, tt.answerAfter
				c.AdminUser, c.AdminPassword = "root", "correct horse battery staple"
			})
			p := h.newProgram("DEPOSIT", 1_000_000, 10_000)
			card := p.virtualCard(p.balance)
			r := &restClient{t: t, base: "http://" + h.App.HTTPAddr(), hc: &http.Client{Timeout: 10 * time.Second}}
			login := decode[map[string]any](t, r.do("POST", "/admin/login", map[string]string{"username": "root", "password": "correct horse battery staple"}, "", 200))
			token := login["token"].(string)

			c := h.client(tt.profile)
			var answered []string
			for i, amount := range []int64{1_000, 2_000, 50_000, 3_000, 99_000} {
				s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: amount, Expiry: card.Expiry})
				answered = append(answered, field(t, s.Resp, 39))
				// List after every answer: the newest is the one just answered.
				page := decode[struct {
					Data []struct {
						Status     string `json:"status"`
						Amount     int64  `json:"amount"`
						ActionCode string `json:"action_code"`
					} `json:"data"`
				}](t, r.do("GET", "/admin/cards/"+card.ID+"/transactions?limit=100", nil, token, 200))
				if len(page.Data) != i+1 {
					t.Fatalf("after %d answers: %d transactions listed", i+1, len(page.Data))
				}
				if got := page.Data[0]; got.Amount != amount || got.ActionCode != answered[i] {
					t.Fatalf("answer %d (%d, DE39 %s) listed as %+v", i+1, amount, answered[i], got)
				}
				var codes []string
				for _, d := range page.Data {
					codes = append(codes, d.ActionCode)
				}
				slices.Reverse(codes)
				if !slices.Equal(codes, answered) {
					t.Fatalf("listed action codes %v, answered %v", codes, answered)
				}
			}
			if answered[2] == answered[0] || answered[4] == answered[0] {
				t.Fatalf("DE39 %v: want the over-balance ones declined", answered)
			}
		})
	}
}
