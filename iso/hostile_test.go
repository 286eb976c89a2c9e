package iso_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

// countingAuthorizer approves and counts its calls: a hostile message that
// reaches it could have placed a hold.
type countingAuthorizer struct{ calls atomic.Int64 }

// UpdateFile applies every file update: an add leaves the card locked
// with its reason, a delete unlocked.
func (a *countingAuthorizer) UpdateFile(_ context.Context, u *authz.FileUpdate) authz.FileUpdateResult {
	a.calls.Add(1)
	if u.Action == authz.FileAdd {
		return authz.FileUpdateResult{Reason: authz.ReasonApproved, Lock: u.Lock, CardID: "crd_1", PartnerID: "p"}
	}
	return authz.FileUpdateResult{Reason: authz.ReasonApproved, CardID: "crd_1", PartnerID: "p"}
}

func (a *countingAuthorizer) Authorize(_ context.Context, req *authz.Request) authz.Decision {
	a.calls.Add(1)
	if req.Kind == authz.KindReversal || req.Kind == authz.KindReversalAdvice {
		return authz.Decision{Reason: authz.ReasonReversalAccepted}
	}
	return approve()
}

// TestHostileFieldsAnswerFormatError sends fields that break their
// character set, impossible dates and times, and data after the last
// field. Each is answered with a format error naming the field in DE44 and
// the log, counted under that field, and never reaches the Authorizer, so
// it can neither place a hold nor write a journal entry.
func TestHostileFieldsAnswerFormatError(t *testing.T) {
	cases := []struct {
		name   string
		mti    string
		extra  map[int]string
		tail   string // bytes appended after the packed message
		field  string // label and DE44 ("" for none)
		echo   []int  // fields still echoed
		absent []int  // fields not echoed
	}{
		{name: "DE41 of eight NUL bytes", extra: map[int]string{41: strings.Repeat("\x00", 8)}, field: "41", echo: []int{11, 37, 42}, absent: []int{41}},
		{name: "DE37 with a NUL", extra: map[int]string{37: "4159100\x000001"}, field: "37", echo: []int{11, 41}, absent: []int{37}},
		{name: "DE43 with a control byte", extra: map[int]string{43: "ANTACA TEST SHOP\x1b        BERLIN       DE"}, field: "43", echo: []int{11, 37}, absent: []int{43}},
		{name: "DE42 with a DEL byte", extra: map[int]string{42: "MERCHANT000000\x7f"}, field: "42", echo: []int{11, 37}, absent: []int{42}},
		{name: "DE37 with a space (an)", extra: map[int]string{37: "4159 0000001"}, field: "37", echo: []int{11}, absent: []int{37}},
		{name: "non-digit in n field DE11", extra: map[int]string{11: "00A001"}, field: "11", echo: []int{37}, absent: []int{11}},
		{name: "non-digit in n field DE49", extra: map[int]string{49: "97 "}, field: "49", echo: []int{11, 37}, absent: []int{49}},
		{name: "sign in n field DE3", extra: map[int]string{3: "-00001"}, field: "3", echo: []int{11, 37}, absent: []int{3}},
		{name: "DE7 9999999999", extra: map[int]string{7: "9999999999"}, field: "7", echo: []int{7, 11, 37}},
		{name: "DE7 31 February", extra: map[int]string{7: "0231101530"}, field: "7", echo: []int{11}},
		{name: "DE7 hour 24", extra: map[int]string{7: "0612241530"}, field: "7", echo: []int{11}},
		{name: "DE12 256161", extra: map[int]string{12: "256161"}, field: "12", echo: []int{11, 12}},
		{name: "DE13 1399", extra: map[int]string{13: "1399"}, field: "13", echo: []int{11, 13}},
		{name: "DE13 day 00", extra: map[int]string{13: "0600"}, field: "13", echo: []int{11}},
		{name: "DE14 month 13", extra: map[int]string{14: "2813"}, field: "14", echo: []int{11}},
		{name: "DE14 month 00", extra: map[int]string{14: "2800"}, field: "14", echo: []int{11}},
		{name: "trailing bytes", tail: "XYZ", field: "trailing", echo: []int{11, 37, 41}},
		{name: "trailing NUL", tail: "\x00", field: "trailing", echo: []int{11, 37}},
		{
			name: "DE90 original time impossible", mti: "0400",
			extra: map[int]string{90: "0100" + "000077" + "1332101500" + "00000123456" + "00000000000"},
			field: "90", echo: []int{11, 37},
		},
	}
	for _, profile := range []string{iso.ProfileCMF, iso.ProfileISO87} {
		t.Run(profile, func(t *testing.T) {
			auth := &countingAuthorizer{}
			ts := startServer(t, iso.Config{Profile: mustProfile(t, profile)}, auth)
			p, f := ts.profile, ts.framing
			wantCode := p.Codes[authz.ReasonFormatError]
			conn := ts.rawDial(t)
			for i, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					mti := tt.mti
					if mti == "" {
						mti = "0100"
					}
					before := auth.calls.Load()
					stanNo := stan(900 + i)
					extra := map[int]string{11: stanNo}
					for k, v := range tt.extra {
						extra[k] = v
					}
					payload := append(pack(t, txn{mti: mti, extra: extra}.build(t, p)), tt.tail...)
					writeRaw(t, conn, f, payload)
					resp := readResponse(t, conn, f, p)
					wantMTI, _ := iso.ResponseMTI(mti)
					if got, _ := resp.GetMTI(); got != wantMTI {
						t.Errorf("MTI %s, want %s", got, wantMTI)
					}
					if got := get(t, resp, 39); got != wantCode {
						t.Errorf("DE39 %q, want %q", got, wantCode)
					}
					if tt.field == "trailing" {
						if resp.GetField(44) != nil {
							t.Errorf("DE44 %q present, want absent", get(t, resp, 44))
						}
					} else if got, want := get(t, resp, 44), fmt.Sprintf("%03s", tt.field); got != want {
						t.Errorf("DE44 %q, want %q", got, want)
					}
					for _, id := range tt.echo {
						if resp.GetField(id) == nil {
							t.Errorf("DE%d not echoed", id)
						}
					}
					if resp.GetField(38) != nil || resp.GetField(54) != nil {
						t.Error("format error carries DE38 or DE54")
					}
					for _, id := range tt.absent {
						if resp.GetField(id) != nil {
							t.Errorf("DE%d echoed, want absent (bad characters are never echoed)", id)
						}
					}
					if got := auth.calls.Load() - before; got != 0 {
						t.Errorf("Authorizer called %d times, want 0", got)
					}
					if got := ts.metricValue(t, "antaca_iso_format_errors_total", map[string]string{"field": tt.field}); got < 1 {
						t.Errorf("format_errors_total{field=%q} = %v, want at least 1", tt.field, got)
					}
				})
			}
			// The link still works and the same message without the
			// hostile bytes is approved.
			writeRaw(t, conn, f, pack(t, txn{mti: "0100", stan: stan(999)}.build(t, p)))
			if got := get(t, readResponse(t, conn, f, p), 39); got != p.Codes[authz.ReasonApproved] {
				t.Errorf("clean follow-up: DE39 %q, want approved", got)
			}
			if got := auth.calls.Load(); got != 1 {
				t.Errorf("Authorizer called %d times, want 1 (the clean follow-up)", got)
			}
			if got := ts.metricValue(t, "antaca_iso_format_errors_total", map[string]string{"field": "41"}); got != 1 {
				t.Errorf("format_errors_total{field=41} = %v, want 1", got)
			}
			waitFor(t, "the log line naming DE41", func() bool {
				return strings.Contains(ts.logs.String(), "field=41")
			})
		})
	}
}

// TestNetworkManagementDE7Checked: an 0800 with an impossible DE7 is a
// format error; a possible one is accepted.
func TestNetworkManagementDE7Checked(t *testing.T) {
	ts := startServer(t, iso.Config{}, &countingAuthorizer{})
	p, f := ts.profile, ts.framing
	conn := ts.rawDial(t)
	for _, tt := range []struct{ de7, want string }{
		{"1232000000", "9100"},
		{"1231235959", "8000"},
	} {
		msg, err := iso.NewNetworkRequest(p, iso.NetworkEcho, "000001", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := msg.Field(7, tt.de7); err != nil {
			t.Fatal(err)
		}
		writeRaw(t, conn, f, pack(t, msg))
		if got := get(t, readResponse(t, conn, f, p), 39); got != tt.want {
			t.Errorf("DE7 %s: DE39 %q, want %q", tt.de7, got, tt.want)
		}
	}
}

// dialFrom connects to the server from a chosen loopback address. On Linux
// every 127.0.0.0/8 address is local, so 127.0.0.2 is a second peer.
func dialFrom(t testing.TB, ts *testServer, local string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ts.Addr().String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

// TestFloodFromOneAddressLeavesOthersServed: one peer opening connections
// without end gets its own share and no more; a processor on another
// address still connects and is answered.
func TestFloodFromOneAddressLeavesOthersServed(t *testing.T) {
	const perAddr, flood = 4, 40
	ts := startServer(t, iso.Config{MaxConnections: 16, MaxConnsPerAddr: perAddr}, &countingAuthorizer{})
	p, f := ts.profile, ts.framing

	for i := range flood {
		if _, err := dialFrom(t, ts, "127.0.0.1"); err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
	}
	waitFor(t, "the flood to be sorted out", func() bool {
		return ts.metricValue(t, "antaca_iso_rejected_connections_total", map[string]string{"reason": "per_address_limit"}) == flood-perAddr
	})
	if got := ts.metricValue(t, "antaca_iso_open_connections", nil); got != perAddr {
		t.Errorf("open connections %v, want %d", got, perAddr)
	}

	for i := range perAddr {
		conn, err := dialFrom(t, ts, "127.0.0.2")
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2 on this system: %v", err)
		}
		writeRaw(t, conn, f, pack(t, txn{mti: "0100", stan: stan(100 + i)}.build(t, p)))
		resp := readResponse(t, conn, f, p)
		if got := get(t, resp, 39); got != "0000" {
			t.Errorf("processor connection %d: DE39 %q, want 0000", i, got)
		}
		if got := get(t, resp, 11); got != stan(100+i) {
			t.Errorf("processor connection %d: DE11 %q", i, got)
		}
	}
	if got := ts.metricValue(t, "antaca_iso_rejected_connections_total", map[string]string{"reason": "limit"}); got != 0 {
		t.Errorf("rejected at the global limit: %v, want 0", got)
	}
}

// TestAllowList: with an allow-list, an address outside it is closed at
// accept and counted; a listed one is served.
func TestAllowList(t *testing.T) {
	allow, err := iso.ParseAllowList("192.0.2.0/24, 127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, iso.Config{Allow: allow}, &countingAuthorizer{})
	p, f := ts.profile, ts.framing

	stranger, err := dialFrom(t, ts, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, stranger, 2*time.Second)
	waitFor(t, "the rejection to be counted", func() bool {
		return ts.metricValue(t, "antaca_iso_rejected_connections_total", map[string]string{"reason": "not_allowed"}) == 1
	})

	conn, err := dialFrom(t, ts, "127.0.0.2")
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2 on this system: %v", err)
	}
	writeRaw(t, conn, f, pack(t, txn{mti: "0100", stan: stan(1)}.build(t, p)))
	if got := get(t, readResponse(t, conn, f, p), 39); got != "0000" {
		t.Errorf("allowed address: DE39 %q, want 0000", got)
	}
}

func TestParseAllowList(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"10.1.2.3", []string{"10.1.2.3/32"}, false},
		{"10.1.0.0/16,192.0.2.7 2001:db8::/32", []string{"10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"}, false},
		{"10.1.2.3/16", []string{"10.1.0.0/16"}, false},
		{"::ffff:10.0.0.1", []string{"10.0.0.1/32"}, false},
		{"10.1.2", nil, true},
		{"10.0.0.0/33", nil, true},
	} {
		got, err := iso.ParseAllowList(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseAllowList(%q): want error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseAllowList(%q): %v", tt.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != strings.Join(tt.want, " ") {
			t.Errorf("ParseAllowList(%q) = %v, want %v", tt.in, s, tt.want)
		}
	}
}
