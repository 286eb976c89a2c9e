package iso_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
)

func fileUpdateMessage(t *testing.T, p *iso.Profile, mti string, f map[int]string) *iso8583.Message {
	t.Helper()
	msg := iso8583.NewMessage(p.Spec)
	msg.MTI(mti)
	for id, v := range f {
		if err := msg.Field(id, v); err != nil {
			t.Fatalf("DE%d: %v", id, err)
		}
	}
	return msg
}

func TestParseFileUpdate(t *testing.T) {
	p := mustProfile(t, iso.ProfileCMF)
	base := func() map[int]string {
		return map[int]string{2: "5412751234567890", 7: "0612103000", 11: "000330", 91: "1", 101: "NEGATIVE", 120: "7"}
	}
	with := func(f map[int]string, id int, v string) map[int]string {
		if v == "" {
			delete(f, id)
		} else {
			f[id] = v
		}
		return f
	}
	cases := []struct {
		name   string
		mti    string
		fields map[int]string
		want   *authz.FileUpdate
		reason authz.Reason // of the error, when one is wanted
	}{
		{"add", "0302", base(), &authz.FileUpdate{Action: authz.FileAdd, PAN: "5412751234567890", Lock: 7,
			Source: "NETWORK", Reference: "0612103000000330", MTI: "0302", STAN: "000330"}, ""},
		{"add with RRN and padded file name", "0303", with(with(base(), 37, "415910000330"), 101, "NEGATIVE  "),
			&authz.FileUpdate{Action: authz.FileAdd, PAN: "5412751234567890", Lock: 7, Source: "NETWORK",
				Reference: "415910000330", MTI: "0303", STAN: "000330"}, ""},
		{"delete needs no DE120", "0302", with(with(base(), 91, "3"), 120, ""), &authz.FileUpdate{Action: authz.FileDelete,
			PAN: "5412751234567890", Source: "NETWORK", Reference: "0612103000000330", MTI: "0302", STAN: "000330"}, ""},
		{"add without a reason", "0302", with(base(), 120, ""), nil, authz.ReasonFormatError},
		{"reason 9", "0302", with(base(), 120, "9"), nil, authz.ReasonFormatError},
		{"reason of two digits", "0302", with(base(), 120, "07"), nil, authz.ReasonFormatError},
		{"missing DE91", "0302", with(base(), 91, ""), nil, authz.ReasonFormatError},
		{"missing PAN", "0302", with(base(), 2, ""), nil, authz.ReasonFormatError},
		{"impossible DE7", "0302", with(base(), 7, "1399103000"), nil, authz.ReasonFormatError},
		{"update code 2 (replace) not supported", "0302", with(base(), 91, "2"), nil, authz.ReasonInvalidTransaction},
		{"inquiry not supported", "0302", with(base(), 91, "5"), nil, authz.ReasonInvalidTransaction},
		{"another file", "0302", with(base(), 101, "MCC102"), nil, authz.ReasonInvalidTransaction},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := iso.ParseFileUpdate(fileUpdateMessage(t, p, tc.mti, tc.fields))
			if tc.want == nil {
				if err == nil {
					t.Fatalf("got %+v, want an error answered %s", got, tc.reason)
				}
				if r := iso.ReasonForError(err); r != tc.reason {
					t.Fatalf("error %v answered %s, want %s", err, r, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tc.want {
				t.Fatalf("got %+v, want %+v", *got, *tc.want)
			}
		})
	}
	if got := iso.MandatoryFields("0302"); len(got) != 5 {
		t.Errorf("MandatoryFields(0302) = %v", got)
	}
}

// fileUpdater decides file updates with a function and answers
// authorizations approved.
type fileUpdater struct {
	countingAuthorizer
	mu      sync.Mutex
	updates []authz.FileUpdate
	decide  func(u *authz.FileUpdate) authz.FileUpdateResult
}

func (f *fileUpdater) UpdateFile(_ context.Context, u *authz.FileUpdate) authz.FileUpdateResult {
	f.mu.Lock()
	f.updates = append(f.updates, *u)
	f.mu.Unlock()
	return f.decide(u)
}

// TestFileUpdateAnswers: 0302 -> 0312 echoes DE2, 7, 11, 32, 37, 91, 101,
// writes DE39 from the profile and DE120 the lock in force when the card
// was reached; format errors name the field and never reach the engine.
func TestFileUpdateAnswers(t *testing.T) {
	fu := &fileUpdater{decide: func(u *authz.FileUpdate) authz.FileUpdateResult {
		switch {
		case u.PAN == "5412750000000000":
			return authz.FileUpdateResult{Reason: authz.ReasonUnknownCard}
		case u.Action == authz.FileDelete:
			return authz.FileUpdateResult{Reason: authz.ReasonNotPermitted, Lock: authz.LockStolen, CardID: "crd_1"}
		}
		return authz.FileUpdateResult{Reason: authz.ReasonApproved, Lock: u.Lock, CardID: "crd_1"}
	}}
	for _, profile := range []string{iso.ProfileCMF, iso.ProfileISO87} {
		t.Run(profile, func(t *testing.T) {
			ts := startServer(t, iso.Config{Profile: mustProfile(t, profile)}, fu)
			p := ts.profile
			de39 := len(p.Codes[authz.ReasonApproved])
			conn := ts.rawDial(t)
			req := map[int]string{2: "5412751234567890", 7: "0612103000", 11: "000330", 32: "123456", 37: "415910000330",
				91: "1", 101: "NEGATIVE", 120: "7"}
			mti, secondary, f, err := docParse(docExchange(t, conn, docBuild(t, "0302", req)), de39)
			if err != nil {
				t.Fatal(err)
			}
			if mti != "0312" || !secondary || f[39] != p.Codes[authz.ReasonApproved] || f[120] != "7" {
				t.Fatalf("answer %s %v %v", mti, secondary, f)
			}
			for _, id := range []int{2, 7, 11, 32, 37, 91, 101} {
				if f[id] != req[id] {
					t.Errorf("DE%d %q, want %q echoed", id, f[id], req[id])
				}
			}
			if _, ok := f[38]; ok {
				t.Error("an 0312 carries DE38")
			}
			// A delete refused: the lock in force comes back.
			req[91], req[11] = "3", "000331"
			delete(req, 120)
			_, _, f, err = docParse(docExchange(t, conn, docBuild(t, "0302", req)), de39)
			if err != nil {
				t.Fatal(err)
			}
			if f[39] != p.Codes[authz.ReasonNotPermitted] || f[120] != "2" || f[91] != "3" {
				t.Errorf("refused delete answered %v", f)
			}
			// Unknown card: no DE120.
			req[2], req[11] = "5412750000000000", "000332"
			_, _, f, _ = docParse(docExchange(t, conn, docBuild(t, "0302", req)), de39)
			if _, ok := f[120]; ok || f[39] != p.Codes[authz.ReasonUnknownCard] {
				t.Errorf("unknown card answered %v", f)
			}
			// Format error: DE44 names DE120, the engine is not asked.
			fu.mu.Lock()
			n := len(fu.updates)
			fu.mu.Unlock()
			req[2], req[11], req[91], req[120] = "5412751234567890", "000333", "1", "X"
			_, _, f, _ = docParse(docExchange(t, conn, docBuild(t, "0302", req)), de39)
			if f[39] != p.Codes[authz.ReasonFormatError] || f[44] != "120" {
				t.Errorf("bad DE120 answered %v", f)
			}
			// Another file: invalid transaction.
			req[120], req[101], req[11] = "7", "MCC102", "000334"
			_, _, f, _ = docParse(docExchange(t, conn, docBuild(t, "0302", req)), de39)
			if f[39] != p.Codes[authz.ReasonInvalidTransaction] {
				t.Errorf("another file answered %v", f)
			}
			fu.mu.Lock()
			if len(fu.updates) != n {
				t.Errorf("refused messages reached the engine: %+v", fu.updates[n:])
			}
			fu.mu.Unlock()
		})
	}
}

// TestFileUpdateWithoutUpdater: an engine that does not apply file
// updates answers them as an unsupported message type.
func TestFileUpdateWithoutUpdater(t *testing.T) {
	auth := &fakeAuthorizer{authorize: func(context.Context, *authz.Request) authz.Decision { return approve() }}
	ts := startServer(t, iso.Config{}, auth)
	conn := ts.rawDial(t)
	req := map[int]string{2: "5412751234567890", 7: "0612103000", 11: "000330", 91: "1", 101: "NEGATIVE", 120: "7"}
	mti, _, f, err := docParse(docExchange(t, conn, docBuild(t, "0302", req)), 4)
	if err != nil {
		t.Fatal(err)
	}
	if mti != "0312" || f[39] != ts.profile.Codes[authz.ReasonFormatError] {
		t.Errorf("answer %s %v, want 0312 format error", mti, f)
	}
	if errors.Is(nil, iso.ErrUnsupportedFileUpdate) {
		t.Fatal("unreachable")
	}
}
