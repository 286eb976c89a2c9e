package demo

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/simulator"
)

// printBanner tells what runs where, how to sign in, and three commands
// to try. The labels are fixed: tests read the addresses from them.
func printBanner(o Options, a *app.App, f *simulator.CardsFile, card simulator.Card, seeded, loginOK bool, took time.Duration) {
	w := o.Stdout
	p := f.Partners[0]
	api := "http://" + a.HTTPAddr()
	fmt.Fprintf(w, "\nAntaca demo: switch, REST API, panel, simulator and bureau in one process, on embedded stores.\n")
	state := fmt.Sprintf("state in %s: journal and rows in %s, keys in %s", o.Dir, filepath.Join(o.Dir, dbFile), o.KeysDir)
	fmt.Fprintln(w, "  "+state)
	if rep, ok := a.LastRebuild(); ok {
		rows := 0
		for _, n := range rep.Rows {
			rows += n
		}
		fmt.Fprintf(w, "  redis is in memory: rebuilt from the journal at this start (%d rows, %d open holds, %s)\n",
			rows, rep.OpenHolds, rep.Took.Round(time.Millisecond))
	}
	if seeded {
		fmt.Fprintf(w, "  first start: seeded partner %s (BIN %s) with %d customers and %d cards\n", p.ID, p.BIN, len(f.Customers), len(f.Cards))
	}
	fmt.Fprintf(w, "  ready in %s\n\n", took.Round(time.Millisecond))

	fmt.Fprintf(w, "  ISO 8583   %s  (profile cmf, 2-byte binary length header)\n", a.ISOAddr())
	fmt.Fprintf(w, "  REST API   %s  (spec: %s/openapi.yaml)\n", api, api)
	fmt.Fprintf(w, "  Panel      %s/panel/\n", api)
	fmt.Fprintf(w, "  Metrics    %s/metrics\n", api)
	if loginOK {
		fmt.Fprintf(w, "  Admin      user %s, password %s\n", o.AdminUser, o.AdminPassword)
	} else {
		fmt.Fprintf(w, "  Admin      user %s exists with the password it was created with (not the one given now)\n", o.AdminUser)
	}
	fmt.Fprintf(w, "  Program    partner %s, BIN %s, %d customers, %d cards: %s\n", p.ID, p.BIN, len(f.Customers), len(f.Cards), filepath.Join(o.Dir, cardsFile))
	if o.Load > 0 {
		fmt.Fprintf(w, "  Load       %g messages/s through the simulator (--load 0 turns it off)\n", o.Load)
	} else {
		fmt.Fprintf(w, "  Load       off (--load 20/s sends some)\n")
	}

	isoFlag := ""
	if a.ISOAddr() != "127.0.0.1:8583" {
		isoFlag = " --iso-addr " + a.ISOAddr()
	}
	login := fmt.Sprintf(`TOKEN=$(curl -s -X POST %s/admin/login -H 'Content-Type: application/json' -d '{"username":"%s","password":"%s"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')`,
		api, o.AdminUser, shellQuoteless(o.AdminPassword))
	fmt.Fprintf(w, "\nTry, in another terminal (card %s, %s):\n\n", card.Name, card.Masked())
	fmt.Fprintf(w, "  # 1. an authorization of 12.34 EUR, sent by the simulator as a card network would\n")
	fmt.Fprintf(w, "  %s sim run%s --cards %s %s\n\n", o.Self, isoFlag, filepath.Join(o.Dir, cardsFile), filepath.Join(o.Dir, scenarioFile))
	fmt.Fprintf(w, "  # 2. lock the card over REST (reason 2, stolen: for good); command 1 then declines with 2009\n")
	fmt.Fprintf(w, "  %s\n", login)
	fmt.Fprintf(w, "  curl -s -X POST %s/admin/cards/%s/lock -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"reason\":2}'\n\n", api, card.ID)
	fmt.Fprintf(w, "  # 3. the card's transactions, newest first\n")
	fmt.Fprintf(w, "  curl -s %s/admin/cards/%s/transactions -H \"Authorization: Bearer $TOKEN\"\n\n", api, card.ID)
	fmt.Fprintf(w, "  %s audit --demo-dir %s   compares the in-memory redis with the journal\n", o.Self, o.Dir)
	fmt.Fprintf(w, "\nCtrl-C stops the demo; the journal is flushed and the next start carries on.\n\n")
}

// shellQuoteless is s when it can stand inside single quotes of the
// printed commands; the demo's own passwords always can.
func shellQuoteless(s string) string {
	if strings.ContainsAny(s, `'"\`) {
		return "<the admin password>"
	}
	return s
}
