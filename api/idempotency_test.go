package api_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/antaca/antaca/ledger"
)

// TestIdempotentCreates: a create retried with the same Idempotency-Key
// answers as the first and creates nothing more; another body under the
// key is refused; a failed create can be retried with its key; keys are
// per caller.
func TestIdempotentCreates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.newProgram("acme", "412345", "DEPOSIT", 0)
	other := e.newProgram("other", "498765", "DEPOSIT", 0)
	count := func(partner, table string) int {
		t.Helper()
		keys, err := ledger.ScanKeys(ctx, e.rdb, e.ledger.Keys().Row(partner, table, "*"), "hash")
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	key := func(k string) reqOpt { return header("Idempotency-Key", k) }
	body := map[string]string{"externalId": "ext-ada", "firstName": "Ada", "lastName": "Tester", "email": "ada@example.com", "phone": "+48123456789"}

	// Customer: the retry replays the first answer.
	first := p.c.do("POST", "/secure/customers", body, key("reg-1"))
	again := p.c.do("POST", "/secure/customers", body, key("reg-1"))
	if first.status != 201 || again.status != 201 || string(first.body) != string(again.body) {
		t.Fatalf("retried create: %d %s / %d %s", first.status, first.body, again.status, again.body)
	}
	if first.header.Get("Idempotent-Replayed") != "" || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: first %q, retry %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	if n := count("acme", "customers"); n != 1 {
		t.Fatalf("%d customers after a retried create, want 1", n)
	}
	var cust customerJSON
	if err := json.Unmarshal(first.body, &cust); err != nil {
		t.Fatal(err)
	}
	// Another body under the key: refused, nothing created.
	changed := map[string]string{"externalId": "ext-bob", "firstName": "Bob", "lastName": "Tester", "email": "bob@example.com", "phone": "+48123456789"}
	if r := p.c.do("POST", "/secure/customers", changed, key("reg-1")); r.status != 422 || r.code() != "IDEMPOTENCY_KEY_REUSED" {
		t.Errorf("key reused with another body: %d %s", r.status, r.body)
	}
	// Another partner's key space is its own.
	if r := other.c.do("POST", "/secure/customers", body, key("reg-1")); r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another partner with the same key: %d %s", r.status, r.body)
	}
	if n := count("acme", "customers"); n != 1 {
		t.Fatalf("%d customers, want 1", n)
	}

	// A failed create is forgotten: the same key works once KYC is done.
	bal := map[string]string{"currency": "EUR"}
	path := "/secure/customers/" + cust.ID + "/balances"
	if r := p.c.do("POST", path, bal, key("bal-1")); r.status != 409 || r.code() != "KYC_NOT_VERIFIED" {
		t.Fatalf("balance before KYC: %d %s", r.status, r.body)
	}
	p.c.json("PUT", "/secure/customers/"+cust.ID+"/kyc", map[string]string{"status": "VERIFIED"}, 200, nil)
	b1 := p.c.do("POST", path, bal, key("bal-1"))
	b2 := p.c.do("POST", path, bal, key("bal-1"))
	if b1.status != 201 || string(b1.body) != string(b2.body) || count("acme", "user_balances") != 1 {
		t.Fatalf("balance create and retry: %d %s / %d %s, %d balances", b1.status, b1.body, b2.status, b2.body, count("acme", "user_balances"))
	}
	var balance balanceJSON
	if err := json.Unmarshal(b1.body, &balance); err != nil {
		t.Fatal(err)
	}

	// A virtual card (JWE): the retry gets the same card's full data, read
	// again (card data is never stored with the key).
	cardBody := map[string]string{"balanceId": balance.ID}
	cpath := "/secure/customers/" + cust.ID + "/cards/virtual"
	r1, plain1 := p.c.encrypted("POST", cpath, cardBody, key("card-1"))
	r2, plain2 := p.c.encrypted("POST", cpath, cardBody, key("card-1"))
	var full1, full2 fullDataJSON
	if r1.status != 201 || r2.status != 201 || json.Unmarshal(plain1, &full1) != nil || json.Unmarshal(plain2, &full2) != nil {
		t.Fatalf("virtual card create and retry: %d / %d", r1.status, r2.status)
	}
	if full1 != full2 || full1.CardNo == "" || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retried virtual card: %+v / %+v", full1.ID, full2.ID)
	}
	if cards := e.cardIDs("acme", balance.ID); len(cards) != 1 {
		t.Fatalf("cards after a retried create: %v", cards)
	}
	stored, err := e.rdb.Keys(ctx, "*idemreq*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range stored {
		v, _ := e.rdb.Get(ctx, k).Result()
		if contains([]byte(v), full1.CardNo) || contains([]byte(v), `"`+full1.CVV+`"`) {
			t.Fatalf("an idempotency record holds card data: %s", v)
		}
	}

	// A replacement retried: one new card, the same answer with the new
	// card's data read again (never stored with the key).
	rpath := "/secure/customers/" + cust.ID + "/cards/" + full1.ID + "/replace"
	q1, rplain1 := p.c.encrypted("POST", rpath, nil, key("replace-1"))
	q2, rplain2 := p.c.encrypted("POST", rpath, nil, key("replace-1"))
	var rep1, rep2 replacementJSON
	if q1.status != 201 || q2.status != 201 || json.Unmarshal(rplain1, &rep1) != nil || json.Unmarshal(rplain2, &rep2) != nil {
		t.Fatalf("replacement and retry: %d %s / %d %s", q1.status, q1.body, q2.status, q2.body)
	}
	if rep1.CardData == nil || rep2.CardData == nil || *rep1.CardData != *rep2.CardData || rep1.Card.ID != rep2.Card.ID ||
		q2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retried replacement: %+v / %+v", rep1, rep2)
	}
	if cards := e.cardIDs("acme", balance.ID); len(cards) != 2 {
		t.Fatalf("cards after a retried replacement: %v", cards)
	}
	stored, err = e.rdb.Keys(ctx, "*idemreq*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range stored {
		v, _ := e.rdb.Get(ctx, k).Result()
		if contains([]byte(v), rep1.CardData.CardNo) || contains([]byte(v), `"`+rep1.CardData.CVV+`"`) {
			t.Fatalf("an idempotency record holds the replacement's card data: %s", v)
		}
	}

	// Concurrent retries: one card, every answer the same card or "in use".
	var wg sync.WaitGroup
	answers := make([]resp, 6)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = p.c.do("POST", "/secure/customers/"+cust.ID+"/cards/virtual/async", cardBody, key("async-1"))
		}()
	}
	wg.Wait()
	var id string
	for _, a := range answers {
		switch {
		case a.status == 202:
			var acc struct{ ID string }
			_ = json.Unmarshal(a.body, &acc)
			if id != "" && acc.ID != id {
				t.Errorf("two async cards under one key: %s and %s", id, acc.ID)
			}
			id = acc.ID
		case a.status == 409 && a.code() == "IDEMPOTENCY_KEY_IN_USE":
		default:
			t.Errorf("concurrent retry: %d %s", a.status, a.body)
		}
	}
	if id == "" {
		t.Fatal("no async create answered 202")
	}
	// A retry replays the 202 while the card is being made or made; once
	// its creation is known to have failed, the key is free again and the
	// retry starts a new card (the failure is simulated on the marker).
	waitCard := func(id string) {
		t.Helper()
		var card cardJSON
		for deadline := time.Now().Add(10 * time.Second); card.Status != "ACTIVE"; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("async card %s never became active", id)
			}
			p.c.json("GET", "/secure/customers/"+cust.ID+"/cards/"+id+"/status", nil, 200, &card)
		}
	}
	waitCard(id)
	if r := p.c.do("POST", "/secure/customers/"+cust.ID+"/cards/virtual/async", cardBody, key("async-1")); r.status != 202 || r.header.Get("Idempotent-Replayed") != "true" || !contains(r.body, id) {
		t.Fatalf("replay of a made async card: %d %s", r.status, r.body)
	}
	must(t, e.rdb.HSet(ctx, e.apiKeys+":pending:"+id, "status", "FAILED", "code", "INTERNAL").Err())
	r := p.c.do("POST", "/secure/customers/"+cust.ID+"/cards/virtual/async", cardBody, key("async-1"))
	var again2 struct{ ID string }
	if err := json.Unmarshal(r.body, &again2); err != nil || r.status != 202 || again2.ID == id || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after a failed async create: %d %s, want a new card", r.status, r.body)
	}
	waitCard(again2.ID)

	// Admin creates: a retried partner creation replays instead of 409.
	part := map[string]string{"id": "zeta", "name": "Zeta", "bin": "476543", "currency": "EUR", "fundingModel": "DEPOSIT"}
	a1 := e.root.do("POST", "/admin/partners", part, key("p-zeta"))
	a2 := e.root.do("POST", "/admin/partners", part, key("p-zeta"))
	if a1.status != 201 || a2.status != 201 || string(a1.body) != string(a2.body) {
		t.Errorf("retried partner creation: %d %s / %d %s", a1.status, a1.body, a2.status, a2.body)
	}
	if r := e.root.do("POST", "/admin/partners", part); r.status != 409 {
		t.Errorf("a second creation without the key: %d %s, want 409", r.status, r.body)
	}
	if r := p.c.do("POST", "/secure/customers", body, key("bad key"), invalidRequest); r.status != 400 || r.code() != "VALIDATION_ERROR" {
		t.Errorf("malformed key: %d %s", r.status, r.body)
	}
	if n := count("acme", "customers"); n != 1 {
		t.Errorf("%d customers at the end, want 1", n)
	}
}
