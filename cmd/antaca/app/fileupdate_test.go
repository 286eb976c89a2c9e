package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/iso/isoclient"
)

// fileUpdate sends an 0302 for pan: code 1 add (with the reason), 3
// delete; it returns DE39 and DE120 of the 0312 ("" when absent).
func (h *harness) fileUpdate(c *isoclient.Client, pan, code string, reason int, rrn string) (de39, de120 string) {
	t := h.t
	t.Helper()
	m := c.NewMessage("0302")
	set := func(id int, v string) {
		if err := m.Field(id, v); err != nil {
			t.Fatalf("setting DE%d: %v", id, err)
		}
	}
	set(2, pan)
	set(7, time.Now().UTC().Format("0102150405"))
	set(11, c.NextSTAN())
	set(32, acquirer)
	if rrn != "" {
		set(37, rrn)
	}
	set(91, code)
	set(101, "NEGATIVE")
	if reason > 0 {
		set(120, string(rune('0'+reason)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Send(ctx, m)
	if err != nil {
		t.Fatalf("sending 0302: %v", err)
	}
	if mti, _ := resp.GetMTI(); mti != "0312" {
		t.Fatalf("answer MTI %s, want 0312", mti)
	}
	de120 = ""
	if resp.GetField(120) != nil {
		de120 = field(t, resp, 120)
	}
	return field(t, resp, 39), de120
}

// TestFileUpdateLocksFromOutside: a network locks a card over ISO 8583
// (0302 add), the card declines with the lock's code, the lock is
// recorded with source NETWORK and the RRN; a delete unlocks a reversible
// lock and is refused for an irreversible one. On a digital-first copy
// the lock holds for both cards and the answers are the same for either.
func TestFileUpdateLocksFromOutside(t *testing.T) {
	h := startApp(t, nil)
	p := h.newProgram("DEPOSIT", 100_000, 10_000)
	c := h.client("cmf")
	ctx := context.Background()
	card := p.virtualCard(p.balance)
	copyCard, err := h.App.Issuing.Print(ctx, p.partner, card.ID, "")
	must(t, err)

	auth := func(what, want string) {
		t.Helper()
		s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Expiry: card.Expiry})
		if got := field(t, s.Resp, 39); got != want {
			t.Fatalf("%s: DE39 %s, want %s", what, got, want)
		}
	}
	auth("before", "0000")

	// Add with reason 7 (suspected fraud).
	if de39, de120 := h.fileUpdate(c, card.PAN, "1", 7, "NET000000001"); de39 != "0000" || de120 != "7" {
		t.Fatalf("add: DE39 %s DE120 %q, want 0000 7", de39, de120)
	}
	auth("after the add", "1002")
	for _, id := range []string{card.ID, copyCard.ID} {
		v, err := h.App.Issuing.Get(ctx, p.partner, id)
		must(t, err)
		if v.LockReason != 7 || v.LockSource != "NETWORK" || v.LockReference != "NET000000001" {
			t.Fatalf("card %s after the network's add: %+v", id, v)
		}
	}
	// A repeat changes nothing and answers the same.
	if de39, de120 := h.fileUpdate(c, card.PAN, "1", 7, "NET000000001"); de39 != "0000" || de120 != "7" {
		t.Fatalf("repeated add: DE39 %s DE120 %q", de39, de120)
	}

	// Delete: a reversible lock goes.
	if de39, de120 := h.fileUpdate(c, card.PAN, "3", 0, ""); de39 != "0000" || de120 != "0" {
		t.Fatalf("delete: DE39 %s DE120 %q, want 0000 0", de39, de120)
	}
	auth("after the delete", "0000")
	if de39, de120 := h.fileUpdate(c, card.PAN, "3", 0, ""); de39 != "0000" || de120 != "0" {
		t.Fatalf("delete of an unlocked card: DE39 %s DE120 %q", de39, de120)
	}

	// Irreversible: stolen (2). A delete is refused (1019), an add with
	// another reason leaves the card stolen.
	if de39, de120 := h.fileUpdate(c, card.PAN, "1", 2, ""); de39 != "0000" || de120 != "2" {
		t.Fatalf("add stolen: DE39 %s DE120 %q", de39, de120)
	}
	v, err := h.App.Issuing.Get(ctx, p.partner, card.ID)
	must(t, err)
	if v.LockReference == "" || len(v.LockReference) != 16 {
		t.Fatalf("reference without DE37 = %q, want DE7 + DE11", v.LockReference)
	}
	if de39, de120 := h.fileUpdate(c, card.PAN, "3", 0, ""); de39 != "1019" || de120 != "2" {
		t.Fatalf("delete of a stolen card: DE39 %s DE120 %q, want 1019 2", de39, de120)
	}
	if de39, de120 := h.fileUpdate(c, card.PAN, "1", 3, ""); de39 != "0000" || de120 != "2" {
		t.Fatalf("add over stolen: DE39 %s DE120 %q, want 0000 2", de39, de120)
	}
	auth("stolen", "2009")

	// Unknown PAN.
	unknown := p.bin + "00000000"
	unknown = unknown[:15] + "0"
	if de39, de120 := h.fileUpdate(c, unknown, "1", 7, ""); de39 != "1011" || de120 != "" {
		t.Fatalf("unknown card: DE39 %s DE120 %q", de39, de120)
	}
	// A removed card.
	other := p.virtualCard(p.balance)
	must(t, h.App.Issuing.Remove(ctx, p.partner, other.ID))
	if de39, _ := h.fileUpdate(c, other.PAN, "3", 0, ""); de39 != "1011" {
		t.Fatalf("removed card: DE39 %s", de39)
	}
	// Format error: no reason on an add; DE44 names DE120.
	if de39, _ := h.fileUpdate(c, card.PAN, "1", 0, ""); de39 != "9100" {
		t.Fatalf("add without reason: DE39 %s", de39)
	}
	h.audit("after the file updates")
}

// TestFileUpdateISO87 answers in the other dialect.
func TestFileUpdateISO87(t *testing.T) {
	h := startApp(t, func(c *app.Config) { c.ISOProfile = "iso87" })
	p := h.newProgram("CREDIT", 100_000, 10_000)
	c := h.client("iso87")
	card := p.virtualCard(p.balance)
	if de39, de120 := h.fileUpdate(c, card.PAN, "1", 1, ""); de39 != "00" || de120 != "1" {
		t.Fatalf("add lost: DE39 %s DE120 %q", de39, de120)
	}
	if de39, _ := h.fileUpdate(c, card.PAN, "3", 0, ""); de39 != "57" {
		t.Fatalf("delete lost: DE39 %s, want 57", de39)
	}
	s := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 100, Expiry: card.Expiry})
	if got := field(t, s.Resp, 39); got != "41" {
		t.Fatalf("authorization on a lost card: %s, want 41", got)
	}
}
