package pgstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/antaca/antaca/ledger"
)

// Event is one journal entry of a partner, decoded and validated: every
// table and column exists in ledger.Columns, numeric values parse as int64.
// Its id is (PartnerID, Seq).
type Event struct {
	PartnerID string
	Seq       int64
	Type      string
	Reason    string
	TsMs      int64
	Changes   []Change
	// Meta is the decision's context (JSON: message type, card id, amount,
	// STAN, RRN, acquirer ...; never card data), empty for other events.
	Meta string
	// StreamID is the Redis stream entry id the event came from, if any.
	StreamID string
}

// Change is what one event did to one row: the row's version after the event,
// the columns it set and the signed amounts it added to numeric columns.
// Set values are strings as in the journal; numeric ones are checked to parse.
type Change struct {
	Table string
	ID    string
	V     int64
	Set   map[string]string
	Add   map[string]int64
}

// wireChange is the JSON form of a change in the journal's "ch" field.
type wireChange struct {
	T   string                `json:"t"`
	ID  jsonString            `json:"id"`
	V   jsonString            `json:"v"`
	Set map[string]jsonString `json:"set,omitempty"`
	Add map[string]jsonString `json:"add,omitempty"`
}

// plainChange is wireChange when every value is a JSON string.
type plainChange struct {
	T   string            `json:"t"`
	ID  string            `json:"id"`
	V   string            `json:"v"`
	Set map[string]string `json:"set"`
	Add map[string]string `json:"add"`
}

func (w wireChange) plain() plainChange {
	p := plainChange{T: w.T, ID: string(w.ID), V: string(w.V)}
	if len(w.Set) > 0 {
		p.Set = make(map[string]string, len(w.Set))
		for k, v := range w.Set {
			p.Set[k] = string(v)
		}
	}
	if len(w.Add) > 0 {
		p.Add = make(map[string]string, len(w.Add))
		for k, v := range w.Add {
			p.Add[k] = string(v)
		}
	}
	return p
}

// jsonString accepts a JSON string or number. The scripts send strings (so
// 64-bit amounts survive Lua's cjson); accepting integral numbers as well
// costs nothing and keeps one careless tostring() from stalling a partner.
type jsonString string

func (s *jsonString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = jsonString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %s", b)
	}
	if i, err := n.Int64(); err == nil {
		*s = jsonString(strconv.FormatInt(i, 10))
		return nil
	}
	// cjson prints large integers as 1.7e+12: keep exact integers exact.
	if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		*s = jsonString(strconv.FormatInt(int64(f), 10))
		return nil
	}
	*s = jsonString(n.String())
	return nil
}

// ParseEntry decodes the fields of one journal stream entry of partnerID
// (seq, type, reason, ts, ch; see docs/ledger.md) into a validated Event.
// An error names what is wrong: the write-behind refuses such an entry
// rather than guess, and leaves it in the stream.
func ParseEntry(partnerID, streamID string, fields map[string]any) (Event, error) {
	str := func(name string) string {
		v, ok := fields[name]
		if !ok || v == nil {
			return ""
		}
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprint(v)
	}
	return parseEntry(partnerID, streamID, str)
}

// ParseJournalEntry is ParseEntry for an entry as a script returned it.
func ParseJournalEntry(e ledger.JournalEntry) (Event, error) {
	return parseEntry(e.PartnerID, e.StreamID, func(name string) string {
		switch name {
		case "seq":
			return strconv.FormatInt(e.Seq, 10)
		case "type":
			return e.Type
		case "reason":
			return e.Reason
		case "ts":
			return e.Ts
		case "ch":
			return e.Ch
		case "meta":
			return e.Meta
		}
		return ""
	})
}

func parseEntry(partnerID, streamID string, str func(string) string) (Event, error) {
	ev := Event{PartnerID: partnerID, StreamID: streamID}
	seq, err := strconv.ParseInt(str("seq"), 10, 64)
	if err != nil || seq < 1 {
		return ev, fmt.Errorf("entry %s of partner %s: seq %q is not a positive integer", streamID, partnerID, str("seq"))
	}
	ev.Seq = seq
	ev.Type = str("type")
	if ev.Type == "" {
		return ev, fmt.Errorf("event %s/%d: no type", partnerID, seq)
	}
	ev.Type = EncodeText(ev.Type)
	ev.Reason = EncodeText(str("reason"))
	ev.Meta = encodeMeta(str("meta"))
	if ts := str("ts"); ts != "" {
		if ev.TsMs, err = strconv.ParseInt(ts, 10, 64); err != nil {
			return ev, fmt.Errorf("event %s/%d: ts %q is not an integer", partnerID, seq, ts)
		}
	} else if ms, _, ok := parseStreamID(streamID); ok {
		ev.TsMs = int64(ms)
	}
	changes, err := decodeChanges(partnerID, str("ch"))
	if err != nil {
		return ev, fmt.Errorf("event %s/%d: %w", partnerID, seq, err)
	}
	ev.Changes = changes
	return ev, nil
}

// decodeChanges parses and validates the "ch" JSON. Lua's cjson encodes an
// empty table as {}, so an empty object means no changes, like [].
func decodeChanges(partnerID, raw string) ([]Change, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "{}" || raw == "null" {
		return nil, nil
	}
	// The scripts send every value as a string: decodePlainFast reads that
	// form without reflection. What it does not take, encoding/json
	// decodes, into plain strings first (quicker than through jsonString),
	// and only when that fails are numbers tried.
	plain, ok := decodePlainFast(raw)
	mapped := false
	if !ok {
		// Lua's cjson copies bytes as they are; encoding/json would replace
		// invalid UTF-8 with U+FFFD. Such bytes travel as private-use runes
		// through the decoder and come back as bytes below.
		if mapped = !utf8.ValidString(raw); mapped {
			raw = mapInvalidBytes(raw)
		}
		plain = nil
		if err := json.Unmarshal([]byte(raw), &plain); err != nil {
			var wire []wireChange
			if err := json.Unmarshal([]byte(raw), &wire); err != nil {
				return nil, fmt.Errorf("decoding ch: %w", err)
			}
			plain = make([]plainChange, len(wire))
			for i, w := range wire {
				plain[i] = w.plain()
			}
		}
	}
	if mapped {
		for i := range plain {
			plain[i].unmapInvalidBytes()
		}
	}
	out := make([]Change, 0, len(plain))
	for i, w := range plain {
		c, err := w.validate(partnerID)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// invalidByteBase is where mapInvalidBytes puts byte b: rune base+b, in
// Unicode's private use area. A change that holds both invalid UTF-8 and
// genuine runes of U+F700..U+F7FF would read the latter back as bytes; no
// text Antaca writes holds either.
const invalidByteBase = 0xF700

func mapInvalidBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(rune(invalidByteBase + int(s[i])))
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unmapInvalidBytes(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r >= invalidByteBase && r <= invalidByteBase+0xFF }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r >= invalidByteBase && r <= invalidByteBase+0xFF {
			b.WriteByte(byte(r - invalidByteBase))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (w *plainChange) unmapInvalidBytes() {
	w.ID = unmapInvalidBytes(w.ID)
	for k, v := range w.Set {
		w.Set[k] = unmapInvalidBytes(v)
	}
}

func (w plainChange) validate(partnerID string) (Change, error) {
	t, err := lookupTable(w.T)
	if err != nil {
		return Change{}, err
	}
	c := Change{Table: w.T, ID: string(w.ID)}
	if c.ID == "" {
		return c, fmt.Errorf("%s: no id", w.T)
	}
	c.ID = EncodeText(c.ID)
	c.V, err = strconv.ParseInt(string(w.V), 10, 64)
	if err != nil || c.V < 1 {
		return c, fmt.Errorf("%s %s: version %q is not a positive integer", w.T, c.ID, w.V)
	}
	if len(w.Set) > 0 {
		c.Set = make(map[string]string, len(w.Set))
	}
	for col, val := range w.Set {
		// Scripts may echo the row's identity in set; accept it when it
		// agrees, since the columns are not settable.
		switch col {
		case "id", "partner_id", "v":
			want := map[string]string{"id": c.ID, "partner_id": partnerID, "v": string(w.V)}[col]
			if string(val) != want {
				return c, fmt.Errorf("%s %s: set %s=%q disagrees with the event (%q)", w.T, c.ID, col, val, want)
			}
			continue
		}
		i, ok := t.index[col]
		if !ok {
			return c, fmt.Errorf("table %q has no column %q", w.T, col)
		}
		if t.numeric[i] {
			if _, err := strconv.ParseInt(string(val), 10, 64); err != nil {
				return c, fmt.Errorf("%s %s: set %s=%q is not an integer", w.T, c.ID, col, val)
			}
		}
		c.Set[col] = EncodeText(string(val))
	}
	if len(w.Add) > 0 {
		c.Add = make(map[string]int64, len(w.Add))
	}
	for col, val := range w.Add {
		i, ok := t.index[col]
		if !ok {
			return c, fmt.Errorf("table %q has no column %q", w.T, col)
		}
		if !t.numeric[i] {
			return c, fmt.Errorf("%s %s: cannot add to text column %q", w.T, c.ID, col)
		}
		if _, both := c.Set[col]; both {
			return c, fmt.Errorf("%s %s: column %q is both set and added", w.T, c.ID, col)
		}
		d, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil {
			return c, fmt.Errorf("%s %s: add %s=%q is not an integer", w.T, c.ID, col, val)
		}
		c.Add[col] = d
	}
	return c, nil
}

// changesJSON is the canonical journal form of an event's changes stored in
// journal.changes: the documented wire format, every value a string, keys
// sorted. Written by hand because encoding/json took a fifth of a batch's
// time; the strings are valid UTF-8 without NUL (validated on parse).
func changesJSON(cs []Change) []byte {
	b := make([]byte, 0, 64+len(cs)*256)
	b = append(b, '[')
	for i, c := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"t":`...)
		b = appendJSONString(b, c.Table)
		b = append(b, `,"id":`...)
		b = appendJSONString(b, c.ID)
		b = append(b, `,"v":"`...)
		b = strconv.AppendInt(b, c.V, 10)
		b = append(b, '"')
		if len(c.Set) > 0 {
			b = append(b, `,"set":{`...)
			for j, k := range sortedKeys(c.Set) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendJSONString(b, c.Set[k])
			}
			b = append(b, '}')
		}
		if len(c.Add) > 0 {
			b = append(b, `,"add":{`...)
			for j, k := range sortedKeys(c.Add) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, `:"`...)
				b = strconv.AppendInt(b, c.Add[k], 10)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// TextEscape starts a text value that the journal stores encoded: what
// Postgres cannot hold in text or jsonb (NUL, invalid UTF-8) is kept as
// TextEscape + standard base64 of the raw bytes, and so is any value that
// itself starts with TextEscape, so that decoding is never ambiguous
// (docs/ledger.md, "Text the journal cannot store").
const TextEscape = "~b64:"

// EncodeText returns s as the journal stores it (see TextEscape).
func EncodeText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && !strings.HasPrefix(s, TextEscape) {
		return s
	}
	return TextEscape + base64.StdEncoding.EncodeToString([]byte(s))
}

// DecodeText reverses EncodeText.
func DecodeText(s string) string {
	if !strings.HasPrefix(s, TextEscape) {
		return s
	}
	b, err := base64.StdEncoding.DecodeString(s[len(TextEscape):])
	if err != nil {
		return s // not written by EncodeText
	}
	return string(b)
}

// DecodeMeta reverses encodeMeta: the meta as the script wrote it, from the
// text of the stored jsonb (which Postgres may have reformatted).
func DecodeMeta(meta string) string {
	if !strings.Contains(meta, metaEscape) {
		return meta
	}
	var wrapped map[string]string
	if err := json.Unmarshal([]byte(meta), &wrapped); err != nil || len(wrapped) != 1 {
		return meta
	}
	v, ok := wrapped[metaEscape]
	if !ok {
		return meta
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return meta
	}
	return string(b)
}

// badJSONEscape reports a \u escape Postgres's jsonb refuses: NUL, or a
// UTF-16 surrogate (which it accepts only as a valid pair; wrapping a valid
// pair too is harmless).
func badJSONEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			h := strings.ToLower(s[i+2 : i+6])
			if h == "0000" || (h[0] == 'd' && h[1] >= '8') {
				return true
			}
		}
		i++ // skip the escaped character (a backslash escapes the next one only)
	}
	return false
}

// metaEscape is the one key of a meta object that stands for a meta the
// journal could not store as JSON: its value is base64 of the raw bytes.
const metaEscape = "~b64"

// encodeMeta returns meta as the journal's jsonb column can store it: as it
// is when it is valid JSON that Postgres accepts, else wrapped losslessly
// as {"~b64": "<base64 of the bytes>"}. Postgres refuses the escape \u0000
// and invalid UTF-8 in jsonb, which Go and Lua's cjson both produce.
func encodeMeta(meta string) string {
	if meta == "" {
		return ""
	}
	if utf8.ValidString(meta) && !badJSONEscape(meta) && json.Valid([]byte(meta)) &&
		!strings.Contains(meta, `"`+metaEscape+`"`) {
		return meta
	}
	return `{"` + metaEscape + `":"` + base64.StdEncoding.EncodeToString([]byte(meta)) + `"}`
}

// parseStreamID splits a Redis stream id "<ms>-<seq>".
func parseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	var err error
	if ms, err = strconv.ParseUint(a, 10, 64); err != nil {
		return 0, 0, false
	}
	if seq, err = strconv.ParseUint(b, 10, 64); err != nil {
		return 0, 0, false
	}
	return ms, seq, true
}

// streamIDLess orders stream ids numerically (string order is wrong once
// the millisecond part changes length).
func streamIDLess(a, b string) bool {
	am, as, aok := parseStreamID(a)
	bm, bs, bok := parseStreamID(b)
	if !aok || !bok {
		return a < b
	}
	if am != bm {
		return am < bm
	}
	return as < bs
}

// sortEvents orders events by (partner, seq): the order the scripts wrote
// them in, which is also each row's version order.
func sortEvents(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].PartnerID != evs[j].PartnerID {
			return evs[i].PartnerID < evs[j].PartnerID
		}
		return evs[i].Seq < evs[j].Seq
	})
}
