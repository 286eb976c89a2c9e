package pgstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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
	ev := Event{PartnerID: partnerID, StreamID: streamID}
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
	seq, err := strconv.ParseInt(str("seq"), 10, 64)
	if err != nil || seq < 1 {
		return ev, fmt.Errorf("entry %s of partner %s: seq %q is not a positive integer", streamID, partnerID, str("seq"))
	}
	ev.Seq = seq
	ev.Type = str("type")
	if ev.Type == "" {
		return ev, fmt.Errorf("event %s/%d: no type", partnerID, seq)
	}
	ev.Reason = str("reason")
	ev.Meta = str("meta")
	if ev.Meta != "" && !json.Valid([]byte(ev.Meta)) {
		return ev, fmt.Errorf("event %s/%d: meta is not JSON", partnerID, seq)
	}
	if err := errors.Join(checkText("type", ev.Type), checkText("reason", ev.Reason), checkText("meta", ev.Meta)); err != nil {
		return ev, fmt.Errorf("event %s/%d: %w", partnerID, seq, err)
	}
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
	// The scripts send every value as a string, which encoding/json decodes
	// quicker into plain strings than through jsonString; only when that
	// fails are numbers tried.
	var plain []plainChange
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

func (w plainChange) validate(partnerID string) (Change, error) {
	t, err := lookupTable(w.T)
	if err != nil {
		return Change{}, err
	}
	c := Change{Table: w.T, ID: string(w.ID)}
	if c.ID == "" {
		return c, fmt.Errorf("%s: no id", w.T)
	}
	if err := checkText(w.T+" id", c.ID); err != nil {
		return c, err
	}
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
		if err := checkText(fmt.Sprintf("%s %s: set %s", w.T, c.ID, col), string(val)); err != nil {
			return c, err
		}
		if t.numeric[i] {
			if _, err := strconv.ParseInt(string(val), 10, 64); err != nil {
				return c, fmt.Errorf("%s %s: set %s=%q is not an integer", w.T, c.ID, col, val)
			}
		}
		c.Set[col] = string(val)
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

// checkText refuses what Postgres cannot store in text or jsonb: invalid
// UTF-8 and NUL. Caught here, such a value holds back one partner; caught
// by Postgres, it would fail every batch it is in.
func checkText(what, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q is not valid UTF-8 text without NUL", what, s)
	}
	return nil
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
