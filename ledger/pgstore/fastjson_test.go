package pgstore

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestDecodePlainFastMatchesJSON: on the changes the scripts write, and on
// awkward inputs, the fast decoder either gives what json.Unmarshal gives
// or declines.
func TestDecodePlainFastMatchesJSON(t *testing.T) {
	inputs := []string{
		`[]`, ` [ ] `, `[{}]`,
		`[{"t":"holds","id":"h1","v":"1","set":{"state":"OPEN","amount":"100"},"add":{"captured":"-5"}}]`,
		`[{"v":"2","add":{},"id":"h1","t":"holds"},{"t":"cards","id":"c1","v":"9","set":{}}]`,
		` [ { "t" : "holds" , "id" : "é€𝄞" , "v" : "1" } ] `,
		// Declined: escapes, numbers, null, unknown, repeated and
		// differently cased keys, trailing data, bad syntax.
		`[{"t":"holds","id":"a\"b","v":"1"}]`, `[{"t":"holds","id":"a\/b","v":"1"}]`,
		`[{"t":"holds","id":"h1","v":1}]`, `[{"t":"holds","set":null}]`, `[null]`,
		`[{"t":"holds","x":"1"}]`, `[{"t":"a","t":"b"}]`, `[{"T":"holds"}]`,
		`[{"t":"holds","set":{"a":"1","a":"2"}}]`, `[]x`, `[{"t":"holds"}`, `[{"t":"holds",}]`,
		`[{"t":"ho` + "\x01" + `lds"}]`, `{"t":"holds"}`, `"x"`, ``,
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, ev := range randomEvents(rng, 200) {
		inputs = append(inputs, string(changesJSON(ev.Changes)))
	}
	fast := 0
	for _, in := range inputs {
		if comparePlainDecoders(t, in) {
			fast++
		}
	}
	if fast < 200 {
		t.Fatalf("the fast decoder took %d of %d inputs; want every script-shaped one", fast, len(inputs))
	}
}

// comparePlainDecoders fails t when the fast decoder accepts in with a
// result other than json.Unmarshal's; it reports whether it accepted.
func comparePlainDecoders(t *testing.T, in string) bool {
	t.Helper()
	got, ok := decodePlainFast(in)
	if !ok {
		return false
	}
	var want []plainChange
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatalf("fast decoder took %q, which encoding/json refuses: %v", in, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast decoder gives %#v, encoding/json %#v", in, got, want)
	}
	return true
}

func FuzzDecodePlainFast(f *testing.F) {
	f.Add(`[{"t":"holds","id":"h1","v":"1","set":{"state":"OPEN"},"add":{"captured":"5"}}]`)
	f.Add(`[{"v":"2","id":"x","t":"cards"},{}]`)
	f.Add(`[{"t":"a\u0041"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		comparePlainDecoders(t, in)
	})
}

func BenchmarkDecodeChanges(b *testing.B) {
	raw := `[{"t":"holds","id":"hld_01HZX3K9Q2","v":"1","set":{"balance_id":"ub_1","card_id":"crd_1","partner_balance_id":"pb_1","currency":"978","amount":"100","state":"OPEN","created_ms":"1764700000000","requested":"100","approved":"100","available_after":"9900"}},` +
		`{"t":"user_balances","id":"ub_1","v":"57","add":{"available":"-100","held":"100"}},{"t":"partner_balances","id":"pb_1","v":"9031","add":{"available":"-100","reserved":"100"}}]`
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, ok := decodePlainFast(raw); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var out []plainChange
			if err := json.Unmarshal([]byte(raw), &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
