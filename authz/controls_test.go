package authz

import (
	"errors"
	"testing"
	"time"
)

func TestWindowOf(t *testing.T) {
	waw, err := time.LoadLocation("Europe/Warsaw")
	if err != nil {
		t.Skip("no time zone data")
	}
	cases := []struct {
		at   time.Time
		loc  *time.Location
		iv   Interval
		id   string
		ends time.Time
	}{
		{time.Date(2025, 8, 31, 21, 59, 59, 0, time.UTC), waw, IntervalDay, "d20250831", time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC)},
		{time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC), waw, IntervalDay, "d20250901", time.Date(2025, 9, 1, 22, 0, 0, 0, time.UTC)},
		{time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC), time.UTC, IntervalDay, "d20250831", time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)},
		// ISO weeks: Monday to Sunday; 29 December 2025 starts week 1 of 2026.
		{time.Date(2025, 12, 31, 12, 0, 0, 0, time.UTC), time.UTC, IntervalWeek, "w202601", time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)},
		{time.Date(2025, 8, 31, 21, 59, 59, 0, time.UTC), waw, IntervalWeek, "w202535", time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC)},
		{time.Date(2025, 8, 31, 21, 59, 59, 0, time.UTC), waw, IntervalMonth, "m202508", time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC)},
		{time.Date(2025, 8, 31, 22, 0, 0, 0, time.UTC), waw, IntervalMonth, "m202509", time.Date(2025, 9, 30, 22, 0, 0, 0, time.UTC)},
		// A day of 23 hours: spring forward in Warsaw.
		{time.Date(2025, 3, 30, 12, 0, 0, 0, time.UTC), waw, IntervalDay, "d20250330", time.Date(2025, 3, 30, 22, 0, 0, 0, time.UTC)},
		{time.Date(2025, 3, 30, 12, 0, 0, 0, time.UTC), waw, IntervalAllTime, "a", time.Time{}},
	}
	for _, c := range cases {
		w := WindowOf(c.iv, c.at, c.loc)
		if w.ID != c.id || !w.End.Equal(c.ends) {
			t.Errorf("%s at %s in %s: %s ending %s, want %s ending %s", c.iv, c.at, c.loc, w.ID, w.End, c.id, c.ends)
		}
	}
}

func TestCheckTightens(t *testing.T) {
	cur := Controls{PerTransactionMax: 1000, Limits: []Limit{{Interval: IntervalDay, Amount: 5000, Count: 10}},
		MCCAllow: []string{"5411", "5812"}, MCCBlock: []string{"7995"}, CountriesBlock: []string{"KP"}, ChannelsBlock: []string{"atm"}}
	ok := cur
	ok.PerTransactionMax = 500
	ok.Limits = []Limit{{Interval: IntervalDay, Amount: 4000, Count: 10}, {Interval: IntervalMonth, Amount: 1}}
	ok.MCCAllow = []string{"5411"}
	ok.CountriesBlock = []string{"KP", "RU"}
	if err := cur.CheckTightens(ok); err != nil {
		t.Errorf("tighter: %v", err)
	}
	for name, mod := range map[string]func(c *Controls){
		"no max":            func(c *Controls) { c.PerTransactionMax = 0 },
		"count up":          func(c *Controls) { c.Limits = []Limit{{Interval: IntervalDay, Amount: 5000, Count: 11}} },
		"day dropped":       func(c *Controls) { c.Limits = []Limit{{Interval: IntervalMonth, Amount: 5000}} },
		"allow widened":     func(c *Controls) { c.MCCAllow = []string{"5411", "5999"} },
		"allow dropped":     func(c *Controls) { c.MCCAllow = nil },
		"mcc unblocked":     func(c *Controls) { c.MCCBlock = nil },
		"channel unblocked": func(c *Controls) { c.ChannelsBlock = []string{"pos"} },
	} {
		n := cur
		n.Limits = append([]Limit(nil), cur.Limits...)
		mod(&n)
		if err := cur.CheckTightens(n); !errors.Is(err, ErrLoosens) {
			t.Errorf("%s: %v, want ErrLoosens", name, err)
		}
	}
}

func TestRouteTableLongestMatch(t *testing.T) {
	rt := NewRouteTable([]Route{
		{PartnerID: "a", ProgramID: "a1", Range: BINRange{From: "400000", To: "400099"}},
		{PartnerID: "b", ProgramID: "b1", Range: BINRange{From: "4001000", To: "4001004"}},
		{PartnerID: "c", ProgramID: "c1", Range: BINRange{From: "40020000", To: "40020000"}},
	})
	for pan, want := range map[string]string{
		"4000421234567890": "a1", "4001004999999999": "b1", "4001005000000000": "", "4002000012345678": "c1", "4002000112345678": "",
	} {
		r, ok := rt.Lookup(pan)
		if got := r.ProgramID; ok != (want != "") || got != want {
			t.Errorf("%s -> %q (%v), want %q", pan, got, ok, want)
		}
	}
	if (BINRange{From: "471200", To: "471200"}).Overlaps(BINRange{From: "4712000", To: "4712004"}) != true {
		t.Error("a 6-digit range covering a 7-digit one does not overlap")
	}
	if (BINRange{From: "4712005", To: "4712009"}).Overlaps(BINRange{From: "4712000", To: "4712004"}) {
		t.Error("adjacent ranges overlap")
	}
}
