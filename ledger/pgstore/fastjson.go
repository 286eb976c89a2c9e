package pgstore

import "unicode/utf8"

// decodePlainFast decodes the journal's "ch" JSON as the scripts write it
// (Lua's cjson: an array of objects with the keys t, id, v, set and add,
// every value a string without escapes, valid UTF-8) into what
// json.Unmarshal into []plainChange gives, without reflection: the
// write-behind decodes every journal entry, and encoding/json was most of
// that cost. Anything else — an escape, a number, null, an unknown or
// repeated key, a syntax error — reports ok false, and the caller decodes
// with encoding/json, which then decides; so ok true always means the
// same result json.Unmarshal would give (TestDecodePlainFastMatchesJSON,
// FuzzDecodePlainFast).
func decodePlainFast(raw string) (out []plainChange, ok bool) {
	if !utf8.ValidString(raw) { // encoding/json would replace the bytes
		return nil, false
	}
	p := fastParser{s: raw}
	if !p.byte('[') {
		return nil, false
	}
	out = []plainChange{}
	if p.peek() == ']' {
		p.i++
		return out, p.end()
	}
	for {
		c, ok := p.change()
		if !ok {
			return nil, false
		}
		out = append(out, c)
		switch p.next() {
		case ',':
		case ']':
			return out, p.end()
		default:
			return nil, false
		}
	}
}

type fastParser struct {
	s string
	i int
}

func (p *fastParser) skip() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek is the next byte after white space, 0 at the end.
func (p *fastParser) peek() byte {
	p.skip()
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

func (p *fastParser) next() byte {
	b := p.peek()
	if b != 0 {
		p.i++
	}
	return b
}

func (p *fastParser) byte(b byte) bool { return p.next() == b }

// end reports whether only white space is left.
func (p *fastParser) end() bool {
	p.skip()
	return p.i == len(p.s)
}

// str reads a string without escapes or control characters.
func (p *fastParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.s) {
		switch c := p.s[p.i]; {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			return v, true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// members reads an object, calling member with each key once the key and
// its colon are read; member reads the value and reports whether it is
// one this decoder takes.
func (p *fastParser) members(member func(key string) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.peek() == '}' {
		p.i++
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.byte(':') || !member(k) {
			return false
		}
		switch p.next() {
		case ',':
		case '}':
			return true
		default:
			return false
		}
	}
}

func (p *fastParser) change() (plainChange, bool) {
	var c plainChange
	var seen [5]bool
	ok := p.members(func(k string) bool {
		slot, ok := 0, false
		switch k {
		case "t":
			c.T, ok = p.str()
		case "id":
			slot = 1
			c.ID, ok = p.str()
		case "v":
			slot = 2
			c.V, ok = p.str()
		case "set":
			slot = 3
			c.Set, ok = p.object()
		case "add":
			slot = 4
			c.Add, ok = p.object()
		}
		if !ok || seen[slot] {
			return false
		}
		seen[slot] = true
		return true
	})
	return c, ok
}

// object reads an object of string values into a new map.
func (p *fastParser) object() (map[string]string, bool) {
	m := map[string]string{}
	ok := p.members(func(k string) bool {
		v, ok := p.str()
		if _, dup := m[k]; !ok || dup {
			return false
		}
		m[k] = v
		return true
	})
	if !ok {
		return nil, false
	}
	return m, true
}
