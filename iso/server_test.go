package iso_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

// contractCodes is the action-code table of the interface document
// (README.md, "Action codes (DE39)"), typed in again here from that
// document (not derived from the code) so the wire test checks the code
// against the document.
var contractCodes = map[authz.Reason][2]string{
	authz.ReasonApproved:                 {"0000", "00"},
	authz.ReasonApprovedPartial:          {"0002", "10"},
	authz.ReasonDoNotHonour:              {"1000", "05"},
	authz.ReasonExpiredCard:              {"1001", "54"},
	authz.ReasonWrongExpiry:              {"1001", "54"},
	authz.ReasonRestrictedCard:           {"1004", "62"},
	authz.ReasonInvalidAmount:            {"1010", "13"},
	authz.ReasonUnknownCard:              {"1011", "14"},
	authz.ReasonCardRemoved:              {"1011", "14"},
	authz.ReasonInsufficientUserFunds:    {"1016", "51"},
	authz.ReasonInsufficientPartnerFunds: {"1016", "51"},
	authz.ReasonIncorrectPIN:             {"1017", "55"},
	authz.ReasonNotPermitted:             {"1019", "57"},
	authz.ReasonCurrencyMismatch:         {"1019", "57"},
	authz.ReasonExceedsAmountLimit:       {"1021", "61"},
	authz.ReasonExceedsFrequencyLimit:    {"1023", "65"},
	authz.ReasonControlTransactionMax:    {"1021", "61"},
	authz.ReasonControlAmountLimit:       {"1021", "61"},
	authz.ReasonControlCountLimit:        {"1023", "65"},
	authz.ReasonControlMCC:               {"1019", "57"},
	authz.ReasonControlCountry:           {"1019", "57"},
	authz.ReasonControlChannel:           {"1019", "57"},
	authz.ReasonPartnerDeclined:          {"1000", "05"},
	authz.ReasonStandInDeclined:          {"1000", "05"},
	authz.ReasonCardNotActivated:         {"1806", "78"},
	authz.ReasonLockedLost:               {"2008", "41"},
	authz.ReasonLockedStolen:             {"2009", "43"},
	authz.ReasonLockedPendingQuery:       {"1000", "05"},
	authz.ReasonLockedConsolidation:      {"1016", "62"},
	authz.ReasonLockedInactive:           {"1018", "78"},
	authz.ReasonLockedPINTries:           {"1006", "75"},
	authz.ReasonLockedFraud:              {"1002", "59"},
	authz.ReasonLockedReplaced:           {"1011", "14"},
	authz.ReasonReversalAccepted:         {"4000", "00"},
	authz.ReasonAdviceAccepted:           {"9001", "00"},
	authz.ReasonNetworkAccepted:          {"8000", "00"},
	authz.ReasonOriginalNotFound:         {"1816", "25"},
	authz.ReasonFormatError:              {"9100", "30"},
	authz.ReasonIncorrectCVV2:            {"1000", "05"},
	authz.ReasonInvalidTransaction:       {"9102", "12"},
	authz.ReasonIssuerUnavailable:        {"9112", "91"},
	authz.ReasonSystemError:              {"9109", "96"},
}

func contractCode(t testing.TB, p *iso.Profile, r authz.Reason) string {
	t.Helper()
	c, ok := contractCodes[r]
	if !ok {
		t.Fatalf("test table lacks reason %s", r)
	}
	if p.Name == iso.ProfileISO87 {
		return c[1]
	}
	return c[0]
}

var echoed = []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49}

func TestRoundTripEveryMTI(t *testing.T) {
	tests := []struct {
		mti, wantMTI string
		kind         authz.Kind
		repeat       bool
	}{
		{"0100", "0110", authz.KindAuthorization, false},
		{"0101", "0110", authz.KindAuthorization, true},
		{"0200", "0210", authz.KindFinancial, false},
		{"0201", "0210", authz.KindFinancial, true},
		{"0120", "0130", authz.KindAuthorizationAdvice, false},
		{"0121", "0130", authz.KindAuthorizationAdvice, true},
		{"0220", "0230", authz.KindFinancialAdvice, false},
		{"0221", "0230", authz.KindFinancialAdvice, true},
		{"0400", "0410", authz.KindReversal, false},
		{"0401", "0410", authz.KindReversal, true},
		{"0420", "0430", authz.KindReversalAdvice, false},
		{"0421", "0430", authz.KindReversalAdvice, true},
	}
	for _, profile := range iso.ProfileNames() {
		t.Run(profile, func(t *testing.T) {
			p := mustProfile(t, profile)
			rec := &recorder{}
			auth := &fakeAuthorizer{authorize: func(ctx context.Context, req *authz.Request) authz.Decision {
				rec.authorizer(authz.Decision{}).Authorize(ctx, req)
				switch {
				case req.Kind.IsReversal():
					return authz.Decision{Reason: authz.ReasonReversalAccepted}
				case req.Kind.IsAdvice():
					return authz.Decision{Reason: authz.ReasonAdviceAccepted}
				}
				return approve()
			}}
			ts := startServer(t, iso.Config{Profile: p}, auth)
			c := ts.dial(t)

			for i, tt := range tests {
				t.Run(tt.mti, func(t *testing.T) {
					x := txn{mti: tt.mti, stan: stan(100 + i), rrn: fmt.Sprintf("4159%08d", i)}
					if tt.kind.IsReversal() {
						x.extra = map[int]string{
							90: "0100" + "000077" + "0612101500" + "00000123456" + "00000000000",
							95: "000000000500" + strings.Repeat("0", 30),
						}
					}
					req := x.build(t, p)
					resp := send(t, c, req)

					if got, _ := resp.GetMTI(); got != tt.wantMTI {
						t.Errorf("response MTI %s, want %s", got, tt.wantMTI)
					}
					for _, id := range echoed {
						// moov-io strips DE4's zero fill when unpacking
						got := strings.TrimLeft(get(t, resp, id), "0")
						want := strings.TrimLeft(get(t, req, id), "0")
						if got != want {
							t.Errorf("DE%d echo: got %q, want %q", id, got, want)
						}
					}
					for _, id := range []int{14, 18, 22, 43, 52, 90, 95} {
						if resp.GetField(id) != nil {
							t.Errorf("DE%d must not be in the response", id)
						}
					}
					wantReason := authz.ReasonApproved
					switch {
					case tt.kind.IsReversal():
						wantReason = authz.ReasonReversalAccepted
					case tt.kind.IsAdvice():
						wantReason = authz.ReasonAdviceAccepted
					}
					if got, want := get(t, resp, 39), contractCode(t, p, wantReason); got != want {
						t.Errorf("DE39 %q, want %q", got, want)
					}
					if wantReason == authz.ReasonApproved {
						if got := get(t, resp, 38); got != "A1B2C3" {
							t.Errorf("DE38 %q, want A1B2C3", got)
						}
						if got, want := get(t, resp, 54), "0002978C000000098950"; got != want {
							t.Errorf("DE54 %q, want %q", got, want)
						}
					} else if resp.GetField(38) != nil || resp.GetField(54) != nil {
						t.Error("DE38/DE54 on a non-approval")
					}

					got := rec.last(t)
					want := &authz.Request{
						Kind: tt.kind, Repeat: tt.repeat, MTI: tt.mti,
						PAN: testPAN, TxnType: "00", Amount: 1050, Currency: "978",
						Expiry: "2812", PINBlock: testPINBlock, MCC: "5411", POSEntryMode: "051",
						TransmissionTime: "0612101530", STAN: x.stan, AcquirerID: "123456", RRN: x.rrn,
						TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", MerchantName: "ANTACA TEST SHOP         BERLIN       DE", MerchantCountry: "DE",
					}
					if tt.kind.IsReversal() {
						want.Original = &authz.OriginalData{MTI: "0100", STAN: "000077", TransmissionTime: "0612101500", AcquirerID: "123456"}
						amt := int64(500)
						want.ReplacementAmount = &amt
					}
					assertRequest(t, got, want)
					if tt.kind.IsReversal() {
						if k, wantKey := got.OriginalKey(), "123456|000077|0612101500|"+x.rrn; k != wantKey {
							t.Errorf("OriginalKey %q, want %q", k, wantKey)
						}
					}
				})
			}
		})
	}
}

func assertRequest(t *testing.T, got, want *authz.Request) {
	t.Helper()
	if got.ReceivedAt.IsZero() {
		t.Error("ReceivedAt not set")
	}
	g := *got
	g.ReceivedAt = time.Time{}
	gOrig, wOrig := g.Original, want.Original
	gRepl, wRepl := g.ReplacementAmount, want.ReplacementAmount
	g.Original, g.ReplacementAmount = nil, nil
	w := *want
	w.Original, w.ReplacementAmount = nil, nil
	if g != w {
		t.Errorf("request:\n got %+v\nwant %+v", g, w)
	}
	if (gOrig == nil) != (wOrig == nil) || (gOrig != nil && *gOrig != *wOrig) {
		t.Errorf("Original: got %+v, want %+v", gOrig, wOrig)
	}
	if (gRepl == nil) != (wRepl == nil) || (gRepl != nil && *gRepl != *wRepl) {
		t.Errorf("ReplacementAmount: got %v, want %v", gRepl, wRepl)
	}
}

func TestEveryReasonProducesTheContractCode(t *testing.T) {
	for _, profile := range iso.ProfileNames() {
		t.Run(profile, func(t *testing.T) {
			p := mustProfile(t, profile)
			var next atomic.Value
			auth := &fakeAuthorizer{authorize: func(context.Context, *authz.Request) authz.Decision {
				return next.Load().(authz.Decision)
			}}
			ts := startServer(t, iso.Config{Profile: p}, auth)
			c := ts.dial(t)
			for _, r := range authz.Reasons() {
				next.Store(authz.Decision{Reason: r, ApprovalCode: "654321", Amount: 700})
				resp := send(t, c, txn{mti: "0100"}.build(t, p))
				if got, want := get(t, resp, 39), contractCode(t, p, r); got != want {
					t.Errorf("%s: DE39 %q, want %q", r, got, want)
				}
				// Reasons sharing a code stay apart in the metrics.
				if got := ts.metricValue(t, "antaca_iso_decisions_total", map[string]string{"reason": string(r)}); got != 1 {
					t.Errorf("%s: decisions_total = %v, want 1", r, got)
				}
				approval := r == authz.ReasonApproved || r == authz.ReasonApprovedPartial
				if has := resp.GetField(38) != nil; has != approval {
					t.Errorf("%s: DE38 present %v, want %v", r, has, approval)
				}
			}
		})
	}
}

func TestPartialApprovalAndBalanceInquiry(t *testing.T) {
	var next atomic.Value
	auth := &fakeAuthorizer{authorize: func(context.Context, *authz.Request) authz.Decision {
		return next.Load().(authz.Decision)
	}}
	ts := startServer(t, iso.Config{}, auth)
	c := ts.dial(t)

	next.Store(authz.Decision{Reason: authz.ReasonApprovedPartial, ApprovalCode: "777", Amount: 700, Available: 0, HasAvailable: true, Currency: "978"})
	resp := send(t, c, txn{mti: "0100", amount: "000000001050"}.build(t, ts.profile))
	for id, want := range map[int]string{39: "0002", 4: "700", 38: "000777", 54: "0002978C000000000000"} {
		if got := get(t, resp, id); got != want {
			t.Errorf("partial: DE%d %q, want %q", id, got, want)
		}
	}

	next.Store(authz.Decision{Reason: authz.ReasonApproved, ApprovalCode: "123456", Available: -2500, HasAvailable: true})
	resp = send(t, c, txn{mti: "0100", pc: "301000", amount: "000000000000"}.build(t, ts.profile))
	for id, want := range map[int]string{39: "0000", 3: "301000", 54: "1002978D000000002500"} {
		if got := get(t, resp, id); got != want {
			t.Errorf("balance inquiry: DE%d %q, want %q", id, got, want)
		}
	}

	next.Store(authz.Decision{Reason: authz.ReasonIncorrectPIN, Available: 5, HasAvailable: true})
	resp = send(t, c, txn{mti: "0100", pc: "300000"}.build(t, ts.profile))
	if resp.GetField(54) != nil {
		t.Error("declined balance inquiry reveals the balance in DE54")
	}
}

func TestNetworkManagement(t *testing.T) {
	for _, profile := range iso.ProfileNames() {
		t.Run(profile, func(t *testing.T) {
			p := mustProfile(t, profile)
			auth := &fakeAuthorizer{authorize: func(context.Context, *authz.Request) authz.Decision {
				t.Error("Authorizer called for network management")
				return authz.Decision{Reason: authz.ReasonSystemError}
			}}
			ts := startServer(t, iso.Config{Profile: p}, auth)
			c := ts.dial(t)
			ctx := context.Background()
			for name, call := range map[string]func(context.Context) error{"sign-on": c.SignOn, "echo": c.Echo, "sign-off": c.SignOff} {
				if err := call(ctx); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}

			for _, tt := range []struct {
				code     string
				drop70   bool
				wantCode authz.Reason
			}{
				{code: iso.NetworkSignOn, wantCode: authz.ReasonNetworkAccepted},
				{code: iso.NetworkSignOff, wantCode: authz.ReasonNetworkAccepted},
				{code: iso.NetworkEcho, wantCode: authz.ReasonNetworkAccepted},
				{code: "999", wantCode: authz.ReasonFormatError},
				{code: "301", drop70: true, wantCode: authz.ReasonFormatError},
			} {
				req, err := iso.NewNetworkRequest(p, tt.code, c.NextSTAN(), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if tt.drop70 {
					req.UnsetField(70)
				}
				resp := send(t, c, req)
				if mti, _ := resp.GetMTI(); mti != "0810" {
					t.Errorf("DE70 %s: MTI %s, want 0810", tt.code, mti)
				}
				if got, want := get(t, resp, 39), contractCode(t, p, tt.wantCode); got != want {
					t.Errorf("DE70 %s (dropped %v): DE39 %q, want %q", tt.code, tt.drop70, got, want)
				}
				for _, id := range []int{7, 11} {
					if get(t, resp, id) != get(t, req, id) {
						t.Errorf("DE70 %s: DE%d not echoed", tt.code, id)
					}
				}
				if !tt.drop70 && get(t, resp, 70) != tt.code {
					t.Errorf("DE70 not echoed: %q", get(t, resp, 70))
				}
			}
			if got := ts.metricValue(t, "antaca_iso_requests_total", map[string]string{"mti": "0800", "code": contractCode(t, p, authz.ReasonNetworkAccepted)}); got != 6 {
				t.Errorf("requests_total{0800,accepted} = %v, want 6", got)
			}
		})
	}
}

func TestRequestDeadline(t *testing.T) {
	const (
		timeout = 200 * time.Millisecond
		n       = 20
		// bound is each answer's latest time, generous for -race on a
		// busy machine. Handled one at a time, the n requests on the one
		// connection would take about n/2 deadlines (a request's deadline
		// runs from its receipt, so one that waited out a deadline for
		// its slot is answered at once): the later half would miss this
		// bound, and so would the ctx-ignoring half if the server waited
		// for the Authorizer's 5 s.
		bound = n * timeout / 4
	)
	release := make(chan struct{})
	auth := &fakeAuthorizer{authorize: func(ctx context.Context, req *authz.Request) authz.Decision {
		if req.Amount == 1 { // honours ctx
			<-ctx.Done()
			return authz.Decision{Reason: authz.ReasonIssuerUnavailable}
		}
		select { // ignores ctx, as a buggy engine might
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return approve()
	}}
	ts := startServer(t, iso.Config{RequestTimeout: timeout}, auth)
	t.Cleanup(func() { close(release) })
	c := ts.dial(t)

	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			amount := "000000000002"
			if i%2 == 0 {
				amount = "000000000001"
			}
			req, err := txn{mti: "0100", amount: amount, rrn: fmt.Sprintf("%012d", i)}.tryBuild(ts.profile)
			if err != nil {
				t.Error(err)
				return
			}
			start := time.Now()
			resp, err := trySend(c, req)
			elapsed := time.Since(start)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if got, err := tryGet(resp, 39); err != nil || got != "9112" {
				t.Errorf("DE39 %q (%v), want 9112", got, err)
			}
			if elapsed > bound {
				t.Errorf("answered after %s, deadline %s: not answered at the deadline, or not concurrently", elapsed, timeout)
			}
			if elapsed < timeout-10*time.Millisecond {
				t.Errorf("answered after %s, before the deadline %s", elapsed, timeout)
			}
		}()
	}
	wg.Wait()
	// The ctx-honouring half returns exactly when the deadline passes;
	// whether the server or the Authorizer noticed first, it may count.
	if got := ts.metricValue(t, "antaca_iso_timeouts_total", nil); got < n/2 || got > n {
		t.Errorf("timeouts_total = %v, want %d to %d", got, n/2, n)
	}
	if got := ts.metricValue(t, "antaca_iso_requests_total", map[string]string{"mti": "0100", "code": "9112"}); got != n {
		t.Errorf("requests_total{0100,9112} = %v, want %d", got, n)
	}
}

func TestConcurrentConnections(t *testing.T) {
	const conns, perConn = 200, 5
	var calls atomic.Int64
	auth := &fakeAuthorizer{authorize: func(_ context.Context, req *authz.Request) authz.Decision {
		calls.Add(1)
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // shuffle completion order
		return authz.Decision{
			Reason: authz.ReasonApproved, ApprovalCode: req.STAN,
			Available: req.Amount * 10, HasAvailable: true, Currency: req.Currency,
		}
	}}
	// A generous deadline: this test is about matching answers to
	// requests, and 200 connections opening at once under -race on a
	// small machine can take longer than the 300 ms default. All 200
	// connections come from one address: lift the per-address limit.
	ts := startServer(t, iso.Config{RequestTimeout: 10 * time.Second, MaxConnsPerAddr: -1}, auth)

	var wg sync.WaitGroup
	for ci := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ts.tryDial()
			if err != nil {
				t.Errorf("conn %d: Dial: %v", ci, err)
				return
			}
			defer c.Close()
			var inner sync.WaitGroup
			for j := range perConn {
				inner.Add(1)
				go func() {
					defer inner.Done()
					amount := int64(ci*100 + j + 1)
					rrn := fmt.Sprintf("%06d%06d", ci, j)
					req, err := txn{mti: "0200", amount: fmt.Sprintf("%012d", amount), rrn: rrn}.tryBuild(ts.profile)
					if err != nil {
						t.Error(err)
						return
					}
					resp, err := trySend(c, req)
					if err != nil {
						t.Errorf("conn %d req %d: %v", ci, j, err)
						return
					}
					sent, err := tryGet(req, 11)
					if err != nil {
						t.Errorf("conn %d req %d: %v", ci, j, err)
						return
					}
					checks := map[int]string{
						11: sent,
						37: rrn,
						4:  strconv.FormatInt(amount, 10),
						38: sent,
						39: "0000",
						54: fmt.Sprintf("0002978C%012d", amount*10),
					}
					for id, want := range checks {
						if got, err := tryGet(resp, id); err != nil || got != want {
							t.Errorf("conn %d req %d: DE%d %q (%v), want %q", ci, j, id, got, err, want)
						}
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	if got := calls.Load(); got != conns*perConn {
		t.Errorf("authorizer calls %d, want %d", got, conns*perConn)
	}
	if got := ts.metricValue(t, "antaca_iso_requests_total", map[string]string{"mti": "0200", "code": "0000"}); got != conns*perConn {
		t.Errorf("requests_total = %v, want %d", got, conns*perConn)
	}
}

func TestConnectionLimit(t *testing.T) {
	ts := startServer(t, iso.Config{MaxConnections: 3}, (&recorder{}).authorizer(approve()))
	var held []interface{ Close() error }
	for range 3 {
		held = append(held, ts.rawDial(t))
	}
	waitFor(t, "3 open connections", func() bool {
		return ts.metricValue(t, "antaca_iso_open_connections", nil) == 3
	})

	extra := ts.rawDial(t)
	expectClosed(t, extra, 2*time.Second)
	// The server counts the rejection just after closing the socket.
	waitFor(t, "rejected_connections_total to reach 1", func() bool {
		return ts.metricValue(t, "antaca_iso_rejected_connections_total", map[string]string{"reason": "limit"}) >= 1
	})
	if got := ts.metricValue(t, "antaca_iso_rejected_connections_total", map[string]string{"reason": "limit"}); got != 1 {
		t.Errorf("rejected_connections_total = %v, want 1", got)
	}

	_ = held[0].Close()
	waitFor(t, "2 open connections", func() bool {
		return ts.metricValue(t, "antaca_iso_open_connections", nil) == 2
	})
	assertHealthy(t, ts)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMalformedInput(t *testing.T) {
	ts := startServer(t, iso.Config{EchoTimeout: 200 * time.Millisecond}, (&recorder{}).authorizer(approve()))
	p, f := ts.profile, ts.framing
	valid := func(stanNo int) []byte {
		return pack(t, txn{mti: "0100", stan: stan(stanNo)}.build(t, p))
	}

	// Cases where the MTI is readable: a format-error answer, the
	// connection stays usable.
	answered := []struct {
		name     string
		payload  []byte
		raw      []byte // written as is instead of framing payload
		wantMTI  string
		wantCode string
		echo     map[int]string // fields that must be echoed
		absent   []int
	}{
		{
			name:     "bad bitmap",
			payload:  []byte("0100ZZZZZZZZZZZZZZZZ165412751234567890"),
			wantMTI:  "0110",
			wantCode: "9100",
			absent:   []int{2, 11},
		},
		{
			name: "bitmap names a field the spec lacks",
			payload: func() []byte {
				// primary bitmap: bit 1 (secondary present); secondary: bit 100
				return []byte("0100" + "8000000000000000" + "0000000010000000" + "x")
			}(),
			wantMTI:  "0110",
			wantCode: "9100",
		},
		{
			name:     "missing mandatory fields",
			payload:  pack(t, txn{mti: "0100", stan: "000501", drop: []int{2, 4}}.build(t, p)),
			wantMTI:  "0110",
			wantCode: "9100",
			echo:     map[int]string{11: "000501", 37: "415910000001", 49: "978"},
			absent:   []int{2, 4, 38},
		},
		{
			name:     "non-numeric amount",
			payload:  pack(t, txn{mti: "0200", stan: "000502", amount: "00000000AB12"}.build(t, p)),
			wantMTI:  "0210",
			wantCode: "9100",
			echo:     map[int]string{11: "000502", 37: "415910000001", 44: "004"},
			absent:   []int{4, 38},
		},
		{
			name:     "unsupported processing code",
			payload:  pack(t, txn{mti: "0100", stan: "000503", pc: "500000"}.build(t, p)),
			wantMTI:  "0110",
			wantCode: "9102",
			echo:     map[int]string{11: "000503", 3: "500000"},
		},
		{
			name:     "unsupported MTI",
			payload:  pack(t, txn{mti: "0300", stan: "000504"}.build(t, p)),
			wantMTI:  "0310",
			wantCode: "9100",
			echo:     map[int]string{11: "000504"},
		},
		{
			name: "truncated last fields",
			payload: func() []byte {
				b := valid(505)
				return b[:len(b)-20] // cuts DE52, DE49 and the end of DE43
			}(),
			wantMTI:  "0110",
			wantCode: "9100",
			echo:     map[int]string{11: "000505", 42: "MERCHANT0000001"},
			absent:   []int{49},
		},
		{
			// The header claims 10 bytes of a longer message: the
			// server answers the 10 bytes, then the rest of the message
			// reads as a length header far over the limit.
			name:     "length header shorter than the message",
			raw:      append([]byte{0, 10}, valid(506)...),
			wantMTI:  "0110",
			wantCode: "9100",
		},
	}
	for _, tt := range answered {
		t.Run(tt.name, func(t *testing.T) {
			conn := ts.rawDial(t)
			if tt.raw != nil {
				if _, err := conn.Write(tt.raw); err != nil {
					t.Fatal(err)
				}
			} else {
				writeRaw(t, conn, f, tt.payload)
			}
			resp := readResponse(t, conn, f, p)
			if mti, _ := resp.GetMTI(); mti != tt.wantMTI {
				t.Errorf("MTI %s, want %s", mti, tt.wantMTI)
			}
			if got := get(t, resp, 39); got != tt.wantCode {
				t.Errorf("DE39 %q, want %q", got, tt.wantCode)
			}
			for id, want := range tt.echo {
				if got := get(t, resp, id); got != want {
					t.Errorf("DE%d %q, want %q", id, got, want)
				}
			}
			for _, id := range tt.absent {
				if resp.GetField(id) != nil {
					t.Errorf("DE%d present, want absent", id)
				}
			}
			// The connection keeps working, except after the short
			// header, where the rest of the message desynchronises the
			// stream and the server must close.
			if tt.raw != nil {
				expectClosed(t, conn, 2*time.Second)
				return
			}
			writeRaw(t, conn, f, valid(600))
			if got := get(t, readResponse(t, conn, f, p), 39); got != "0000" {
				t.Errorf("follow-up request: DE39 %q, want 0000", got)
			}
		})
	}

	// Cases where the MTI cannot be read or the stream is broken: the
	// connection closes.
	closed := []struct {
		name string
		raw  []byte // written as is, header included
	}{
		{"random bytes", []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03}},
		{"MTI not digits", append([]byte{0, 8}, "ABCD1234"...)},
		{"frame shorter than an MTI", append([]byte{0, 2}, "01"...)},
		{"zero length", []byte{0, 0, '0', '1', '0', '0'}},
		{"oversize frame", append([]byte{0x30, 0x00}, valid(700)...)},
		{"frame stalls halfway", append([]byte{0, 100}, "0100ABCDEF"...)},
	}
	for _, tt := range closed {
		t.Run(tt.name, func(t *testing.T) {
			conn := ts.rawDial(t)
			if _, err := conn.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, conn, 2*time.Second)
		})
	}

	assertHealthy(t, ts)
	if got := ts.metricSum(t, "antaca_iso_format_errors_total"); got < float64(len(answered)-1+len(closed)-1) {
		t.Errorf("format_errors_total = %v, want at least %d", got, len(answered)-1+len(closed)-1)
	}
}

func TestPanicInAuthorizerAnswersSystemError(t *testing.T) {
	auth := &fakeAuthorizer{authorize: func(_ context.Context, req *authz.Request) authz.Decision {
		if req.Amount == 666 {
			panic("engine bug")
		}
		return approve()
	}}
	ts := startServer(t, iso.Config{}, auth)
	c := ts.dial(t)
	resp := send(t, c, txn{mti: "0100", amount: "000000000666"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "9109" {
		t.Errorf("DE39 %q, want 9109", got)
	}
	if got := get(t, resp, 37); got != "415910000001" {
		t.Errorf("DE37 %q not echoed on system error", got)
	}
	resp = send(t, c, txn{mti: "0100"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "0000" {
		t.Errorf("after a panic: DE39 %q, want 0000", got)
	}
	if !strings.Contains(ts.logs.String(), "engine bug") {
		t.Error("panic not logged")
	}
}

func TestBadDecisionAnswersSystemError(t *testing.T) {
	for name, d := range map[string]authz.Decision{
		"unknown reason":         {Reason: "NOT_A_REASON"},
		"empty reason":           {},
		"approval code too long": {Reason: authz.ReasonApproved, ApprovalCode: "1234567"},
	} {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, iso.Config{Profile: mustProfile(t, iso.ProfileISO87)}, (&recorder{}).authorizer(d))
			resp := send(t, ts.dial(t), txn{mti: "0100"}.build(t, ts.profile))
			if got := get(t, resp, 39); got != "96" {
				t.Errorf("DE39 %q, want 96", got)
			}
		})
	}
}

func TestASCII4Framing(t *testing.T) {
	f := iso.Framing{Header: iso.ASCII4}
	ts := startServer(t, iso.Config{Framing: f}, (&recorder{}).authorizer(approve()))
	resp := send(t, ts.dial(t), txn{mti: "0100"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "0000" {
		t.Errorf("DE39 %q, want 0000", got)
	}

	conn := ts.rawDial(t)
	payload := pack(t, txn{mti: "0100", stan: "000042"}.build(t, ts.profile))
	if _, err := fmt.Fprintf(conn, "%04d%s", len(payload), payload); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(hdr); err != nil {
		t.Fatal(err)
	}
	if n, err := strconv.Atoi(string(hdr)); err != nil || n < 20 {
		t.Errorf("response header %q is not a 4-digit ASCII length", hdr)
	}

	for name, raw := range map[string]string{"non-digit header": "00A1", "oversize": "9999"} {
		t.Run(name, func(t *testing.T) {
			conn := ts.rawDial(t)
			if _, err := conn.Write([]byte(raw + "0100")); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, conn, 2*time.Second)
		})
	}
	assertHealthy(t, ts)
}

func TestIdleConnectionIsProbedWithEcho(t *testing.T) {
	cfg := iso.Config{ReadTimeout: 100 * time.Millisecond, EchoTimeout: 200 * time.Millisecond}
	ts := startServer(t, cfg, (&recorder{}).authorizer(approve()))
	p, f := ts.profile, ts.framing

	t.Run("answered echo keeps the link", func(t *testing.T) {
		conn := ts.rawDial(t)
		for range 2 {
			echo := readResponse(t, conn, f, p)
			if mti, _ := echo.GetMTI(); mti != "0800" || get(t, echo, 70) != iso.NetworkEcho {
				t.Fatalf("got MTI %s DE70 %q, want 0800 echo test", mti, get(t, echo, 70))
			}
			resp, err := iso.AnswerNetworkManagement(p, echo)
			if err != nil {
				t.Fatal(err)
			}
			writeRaw(t, conn, f, pack(t, resp))
		}
		writeRaw(t, conn, f, pack(t, txn{mti: "0100", stan: "000900"}.build(t, p)))
		if got := get(t, readResponse(t, conn, f, p), 39); got != "0000" {
			t.Errorf("after echo tests: DE39 %q", got)
		}
	})

	t.Run("unanswered echo closes the link", func(t *testing.T) {
		conn := ts.rawDial(t)
		start := time.Now()
		readResponse(t, conn, f, p)
		expectClosed(t, conn, 2*time.Second)
		if el := time.Since(start); el > cfg.ReadTimeout+cfg.EchoTimeout+500*time.Millisecond {
			t.Errorf("closed after %s", el)
		}
	})

	t.Run("client answers echo tests by itself", func(t *testing.T) {
		c := ts.dial(t)
		time.Sleep(3 * (cfg.ReadTimeout + cfg.EchoTimeout))
		if got := get(t, send(t, c, txn{mti: "0100"}.build(t, p)), 39); got != "0000" {
			t.Errorf("DE39 %q", got)
		}
	})
}

func TestMetricsLabelsStayBounded(t *testing.T) {
	ts := startServer(t, iso.Config{}, (&recorder{}).authorizer(approve()))
	c := ts.dial(t)
	send(t, c, txn{mti: "0100"}.build(t, ts.profile))
	send(t, c, txn{mti: "0300"}.build(t, ts.profile))
	send(t, c, txn{mti: "0200", drop: []int{2}}.build(t, ts.profile))

	for _, tt := range []struct {
		mti, code string
		want      float64
	}{{"0100", "0000", 1}, {"other", "9100", 1}, {"0200", "9100", 1}} {
		if got := ts.metricValue(t, "antaca_iso_requests_total", map[string]string{"mti": tt.mti, "code": tt.code}); got != tt.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", tt.mti, tt.code, got, tt.want)
		}
	}
	if got := ts.metricValue(t, "antaca_iso_decision_seconds", nil); got != 3 {
		t.Errorf("decision_seconds count = %v, want 3", got)
	}
	if got := ts.metricValue(t, "antaca_iso_open_connections", nil); got != 1 {
		t.Errorf("open_connections = %v, want 1", got)
	}
	// The gauge drops just after the answer is written.
	waitFor(t, "no request in flight", func() bool {
		return ts.metricValue(t, "antaca_iso_inflight_requests", nil) == 0
	})
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), testPAN[:6]) || strings.Contains(lp.GetValue(), "4159") {
					t.Errorf("%s has label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

func TestInFlightBoundPerConnection(t *testing.T) {
	const limit = 3
	var cur, peak atomic.Int32
	release := make(chan struct{})
	auth := &fakeAuthorizer{authorize: func(ctx context.Context, _ *authz.Request) authz.Decision {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return approve()
	}}
	ts := startServer(t, iso.Config{MaxInFlightPerConn: limit, RequestTimeout: 5 * time.Second}, auth)
	c := ts.dial(t)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := txn{mti: "0100"}.tryBuild(ts.profile)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := trySend(c, req)
			if err != nil {
				t.Error(err)
				return
			}
			if got, err := tryGet(resp, 39); err != nil || got != "0000" {
				t.Errorf("DE39 %q (%v), want 0000", got, err)
			}
		}()
	}
	waitFor(t, "the connection's slots to fill", func() bool { return cur.Load() == limit })
	time.Sleep(50 * time.Millisecond) // would a fourth start now?
	close(release)
	wg.Wait()
	if got := peak.Load(); got != limit {
		t.Errorf("peak concurrent decisions on one connection %d, want %d", got, limit)
	}
}

// abandoningAuthorizer approves too late and records what it is asked to undo.
type abandoningAuthorizer struct {
	fakeAuthorizer
	abandoned chan string
}

func (a *abandoningAuthorizer) Abandon(_ context.Context, req *authz.Request, d authz.Decision) {
	a.abandoned <- req.RRN + "/" + string(d.Reason)
}

func TestLateApprovalIsAbandoned(t *testing.T) {
	const timeout = 50 * time.Millisecond
	auth := &abandoningAuthorizer{abandoned: make(chan string, 1)}
	auth.authorize = func(ctx context.Context, req *authz.Request) authz.Decision {
		time.Sleep(timeout + 50*time.Millisecond) // the reservation completes after the deadline
		return approve()
	}
	ts := startServer(t, iso.Config{RequestTimeout: timeout}, auth)
	c := ts.dial(t)
	resp := send(t, c, txn{mti: "0100", amount: "000000000100", rrn: "000000000777"}.build(t, ts.profile))
	if got := get(t, resp, 39); got != "9112" {
		t.Fatalf("DE39 %q, want 9112", got)
	}
	select {
	case got := <-auth.abandoned:
		if got != "000000000777/APPROVED" {
			t.Fatalf("abandoned %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the late approval was not handed back to be undone")
	}
}
