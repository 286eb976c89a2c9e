package pgstore

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// TestPoisonEntriesDoNotStall puts into the streams of two partners entries
// that Postgres cannot store as they are — a NUL in a text column and in a
// row id, invalid UTF-8, the JSON escape \u0000 in the meta — and one that
// Postgres refuses whatever the encoding (a row id too large for its
// index). Every entry after them, of every partner, must be durable; the
// encodable ones are stored losslessly and read back byte for byte; the
// refused one is quarantined with its error.
func TestPoisonEntriesDoNotStall(t *testing.T) {
	fx := newFixture(t)
	ctx := ctxT(t, 30*time.Second)
	nul := "TERM\x00\x00\x00\x00"
	fx.emit(t, "pa", "create", chg{T: "customers", ID: "c1", Set: map[string]string{"first_name": nul}})
	// As Lua's cjson writes invalid UTF-8: the bytes as they are.
	must(t, fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.Journal("pa"), Values: map[string]any{
		"seq": "2", "type": "rename", "ts": "1", "ch": `[{"t":"customers","id":"c1","v":"2","set":{"last_name":"bad` + "\xff\xfe" + `"}}]`}}).Err())
	must(t, fx.rdb.Set(ctx, fx.keys.Seq("pa"), 2, 0).Err())
	fx.emit(t, "pa", "create", chg{T: "customers", ID: "c\x002", Set: map[string]string{"first_name": TextEscape + "looks encoded"}})
	// The meta as Go's encoding/json writes a NUL.
	must(t, fx.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fx.keys.Journal("pa"), Values: map[string]any{
		"seq": "4", "type": "decline", "reason": "UNKNOWN_CARD", "ts": "1", "ch": "[]",
		"meta": `{"terminal":"` + "\\u0000\\u0000" + `","rrn":"12` + "\xff" + `"}`}}).Err())
	must(t, fx.rdb.Set(ctx, fx.keys.Seq("pa"), 4, 0).Err())
	// Too large for a btree index entry (and not compressible).
	rnd := make([]byte, 9000)
	_, _ = rand.Read(rnd)
	huge := base64.StdEncoding.EncodeToString(rnd)
	fx.emit(t, "pb", "create", chg{T: "customers", ID: huge, Set: map[string]string{"first_name": "Ada"}})
	for i := range 5 {
		fx.emit(t, "pa", "rename", chg{T: "customers", ID: "c1", Set: map[string]string{"email": "e" + string(rune('0'+i))}})
		fx.emit(t, "pb", "create", chg{T: "customers", ID: "b" + string(rune('0'+i)), Set: map[string]string{"first_name": "Grace"}})
	}

	w, reg := fx.worker(t, "w1")
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	fx.assertJournal(t, "pa", 9)
	if got := fx.journalSeqs(t, "pb"); len(got) != 5 || got[0] != 2 {
		t.Fatalf("journal of pb = %v, want seq 2..6 (1 quarantined)", got)
	}
	fx.assertQuarantined(t, "pb", 1, "index row")
	if got := counterValue(t, reg, "antaca_journal_quarantined_total", nil); got != 1 {
		t.Errorf("quarantined_total = %v, want 1", got)
	}

	// Read back through the same path as Rebuild and Audit: byte for byte.
	var rows []storedRow
	if err := eachRow(ctx, fx.db, mustTable(t, "customers"), func(r storedRow) error {
		if r.partner == "pa" {
			rows = append(rows, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	found := map[string]map[string]string{}
	tab := mustTable(t, "customers")
	for _, r := range rows {
		m := map[string]string{}
		for i, c := range tab.cols {
			m[c] = r.vals[i]
		}
		found[r.id] = m
	}
	if c := found["c1"]; c == nil || c["first_name"] != nul || c["last_name"] != "bad\xff\xfe" || c["email"] != "e4" {
		t.Errorf("c1 read back = %q, want the NUL and invalid bytes intact and email e4", c)
	}
	if c := found["c\x002"]; c == nil || c["first_name"] != TextEscape+"looks encoded" {
		t.Errorf("c\\x002 read back = %q, want its first name as written", c)
	}
	var meta string
	must(t, fx.pool.QueryRow(ctx, `SELECT meta::text FROM journal WHERE partner_id = 'pa' AND seq = 4`).Scan(&meta))
	var wrapped map[string]string
	if err := json.Unmarshal([]byte(meta), &wrapped); err != nil || wrapped[metaEscape] == "" {
		t.Fatalf("stored meta = %s, want it wrapped as {%q: base64}", meta, metaEscape)
	}
	if got := DecodeMeta(meta); got != `{"terminal":"`+"\\u0000\\u0000"+`","rrn":"12`+"\xff"+`"}` {
		t.Errorf("DecodeMeta = %q, want the original bytes", got)
	}
	if l := fx.rdb.XLen(ctx, fx.keys.Journal("pa")).Val() + fx.rdb.XLen(ctx, fx.keys.Journal("pb")).Val(); l != 0 {
		t.Errorf("streams hold %d entries after the flush, want 0", l)
	}
}

func mustTable(tb testing.TB, name string) *table {
	tb.Helper()
	t, err := lookupTable(name)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// FuzzJournalEncoding feeds arbitrary bytes to the journal's text and meta
// encoders and to ParseEntry: parsing never refuses text content, what it
// produces is storable by Postgres (valid UTF-8, no NUL, no \u0000 or
// surrogate escape in JSON), and decoding gives the bytes back.
func FuzzJournalEncoding(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00", "a\x00b", "\xff\xfe", TextEscape, TextEscape + "QQ==", `{"a":"\u0000"}`,
		`{"a":"\ud800"}`, `{"` + metaEscape + `":"x"}`, "{", `{"x":1}`, "\u2028", "TERM\x00\x00\x00\x00"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, meta string) {
		enc := EncodeText(text)
		if !utf8.ValidString(enc) || strings.IndexByte(enc, 0) >= 0 {
			t.Fatalf("EncodeText(%q) = %q: not storable", text, enc)
		}
		if got := DecodeText(enc); got != text {
			t.Fatalf("DecodeText(EncodeText(%q)) = %q", text, got)
		}
		m := encodeMeta(meta)
		if m != "" && (!json.Valid([]byte(m)) || !utf8.ValidString(m) || badJSONEscape(m)) {
			t.Fatalf("encodeMeta(%q) = %q: not storable as jsonb", meta, m)
		}
		if got := DecodeMeta(m); got != meta {
			t.Fatalf("DecodeMeta(encodeMeta(%q)) = %q", meta, got)
		}
		ch, _ := json.Marshal([]map[string]any{{"t": "customers", "id": text, "v": "1", "set": map[string]string{"first_name": text}}})
		ev, err := ParseEntry("p1", "1-0", map[string]any{"seq": "1", "type": text, "reason": text, "ts": "1", "ch": string(ch), "meta": meta})
		if text == "" {
			return // no type / no id: refused for that, which is right
		}
		if err != nil {
			t.Fatalf("ParseEntry refused text content: %v", err)
		}
		for _, s := range []string{ev.Type, ev.Reason, ev.Changes[0].ID, ev.Changes[0].Set["first_name"]} {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("ParseEntry produced %q: not storable as text", s)
			}
		}
		if js := changesJSON(ev.Changes); !json.Valid(js) || !utf8.Valid(js) || badJSONEscape(string(js)) {
			t.Fatalf("changesJSON = %q: not storable as jsonb", js)
		}
	})
}
