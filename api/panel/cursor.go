package panel

import (
	"net/http"
	"net/url"
	"strings"
)

// Cursor pages. The API pages transactions and webhook deliveries with a
// cursor (starting_after = the last id of the page before), which only
// goes forward. The panel carries the cursors of the pages already seen
// in the links (?after=<this page's cursor>&back=<the earlier ones>), so
// that "Previous" works without any state on the server.
type cursor struct {
	after string   // starting_after of this page; "" for the newest page
	trail []string // the after of every earlier page, oldest first ("" for the newest)
	lost  bool     // the trail was missing or too long: the page number is unknown
}

// maxTrail bounds the pages a link remembers (about 40 characters each);
// past it "Previous" gives way to "Newest".
const maxTrail = 100

func readCursor(r *http.Request) cursor {
	q := r.URL.Query()
	c := cursor{after: q.Get("after")}
	if !cursorText(c.after) {
		return cursor{}
	}
	if c.after == "" {
		return c
	}
	back := q.Get("back")
	if back == "" {
		c.lost = true
		return c
	}
	for _, x := range strings.Split(back, ",") {
		if x == "-" {
			x = ""
		} else if x == "" || !cursorText(x) {
			return cursor{after: c.after, lost: true}
		}
		c.trail = append(c.trail, x)
	}
	if len(c.trail) > maxTrail {
		return cursor{after: c.after, lost: true}
	}
	return c
}

// cursorText accepts what an id of the API looks like (txn_..., dlv_...).
func cursorText(s string) bool {
	if len(s) > 600 {
		return false
	}
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

// query is the page's own position, for links that come back to it.
func (c cursor) query() url.Values {
	v := url.Values{}
	if c.after == "" {
		return v
	}
	v.Set("after", c.after)
	if !c.lost {
		back := make([]string, len(c.trail))
		for i, x := range c.trail {
			back[i] = x
			if x == "" {
				back[i] = "-"
			}
		}
		v.Set("back", strings.Join(back, ","))
	}
	return v
}

func (c cursor) url(base, anchor string) string {
	if q := c.query().Encode(); q != "" {
		return base + "?" + q + anchor
	}
	return base + anchor
}

// links returns the page number (0 when unknown) and the links to the
// newer page, the older page (after last, when more follow) and the
// newest page (when the way back is unknown).
func (c cursor) links(base, anchor, last string, more bool) (page int, prev, next, first string) {
	if !c.lost {
		page = len(c.trail) + 1
	}
	if n := len(c.trail); n > 0 && !c.lost {
		prev = cursor{after: c.trail[n-1], trail: c.trail[:n-1]}.url(base, anchor)
	}
	if c.lost {
		first = base + anchor
	}
	if more && last != "" {
		nc := cursor{after: last, trail: append(append([]string{}, c.trail...), c.after), lost: c.lost}
		if len(nc.trail) > maxTrail {
			nc.trail, nc.lost = nil, true
		}
		next = nc.url(base, anchor)
	}
	return page, prev, next, first
}
