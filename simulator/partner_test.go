package simulator

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/antaca/antaca/api/decision"
	"github.com/antaca/antaca/authz"
)

// TestPartnerBackendKnobs: the simulated backend answers what its knobs
// say, checks the signature, and a failing or slow one leaves the decision
// to the program's stand-in policy.
func TestPartnerBackendKnobs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := func(cfg PartnerConfig) (*PartnerBackend, string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b := NewPartnerBackend(cfg)
		go func() { _ = ServePartner(ctx, ln, b) }()
		return b, "http://" + ln.Addr().String() + "/"
	}
	client := decision.New(decision.Config{BreakerFailures: 1000})
	txn := authz.PartnerTxn{ID: "t", Amount: 500, Currency: "EUR"}
	prog := func(url string) authz.Program {
		return authz.Program{ID: "sim", RemoteURL: url, RemoteSecret: "s3cret", DecisionTimeoutMS: 300,
			StandIn: authz.StandIn{Policy: authz.StandInDecline}}
	}
	cases := []struct {
		name string
		cfg  PartnerConfig
		want authz.Verdict
	}{
		{"approve", PartnerConfig{Secret: "s3cret"}, authz.Verdict{DecidedBy: authz.DecidedByPartner, Approve: true}},
		{"decline over", PartnerConfig{Secret: "s3cret", DeclineOver: 100}, authz.Verdict{DecidedBy: authz.DecidedByPartner,
			Reason: authz.ReasonPartnerDeclined, PartnerReason: "over the simulated limit"}},
		{"partial and fund", PartnerConfig{Partial: 200, Fund: true}, authz.Verdict{DecidedBy: authz.DecidedByPartner, Approve: true, Cap: 200, Fund: "500"}},
		{"fail", PartnerConfig{Fail: 1}, authz.Verdict{DecidedBy: authz.DecidedByStandIn, Reason: authz.ReasonStandInDeclined}},
		{"garbage", PartnerConfig{Garbage: 1}, authz.Verdict{DecidedBy: authz.DecidedByStandIn, Reason: authz.ReasonStandInDeclined}},
		{"slow", PartnerConfig{Latency: 2 * time.Second}, authz.Verdict{DecidedBy: authz.DecidedByStandIn, Reason: authz.ReasonStandInDeclined}},
		{"wrong secret", PartnerConfig{Secret: "other"}, authz.Verdict{DecidedBy: authz.DecidedByStandIn, Reason: authz.ReasonStandInDeclined}},
	}
	for _, tc := range cases {
		b, url := serve(tc.cfg)
		if got := client.Decide(ctx, prog(url), txn); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if tc.name == "wrong secret" && b.Stats.BadSignature.Load() != 1 {
			t.Errorf("wrong secret: %s", b.Stats.String())
		}
	}
}
