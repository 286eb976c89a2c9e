package iso

import (
	"errors"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
)

// TestUnpackFrameDropsEveryBadField: when several fields break their
// character sets, the error names them all, the first one is the fault,
// none of them is kept for the echo, and the others are.
func TestUnpackFrameDropsEveryBadField(t *testing.T) {
	m := iso8583.NewMessage(packSpec(cmfProfile))
	m.MTI("0100")
	for id, v := range baseFields {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	for id, v := range map[int]string{41: "TERM\x00001", 43: strings.Repeat("A", 39) + "\n"} {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := unpackFrame(cmfProfile, packed)
	var fe *FieldError
	if !errors.As(err, &fe) || len(fe.Fields) != 2 || fe.Fields[0] != 41 || fe.Fields[1] != 43 {
		t.Fatalf("error %v, want a FieldError naming DE41 and DE43", err)
	}
	if FaultField(err) != 41 || !errors.Is(err, ErrFormat) {
		t.Errorf("FaultField %d, want 41; ErrFormat %v", FaultField(err), errors.Is(err, ErrFormat))
	}
	for _, id := range []int{41, 43} {
		if msg.GetField(id) != nil {
			t.Errorf("DE%d kept", id)
		}
	}
	for _, id := range []int{2, 11, 37, 42, 49} {
		if msg.GetField(id) == nil {
			t.Errorf("DE%d dropped", id)
		}
	}
	if strings.Contains(err.Error(), "TERM") {
		t.Errorf("error %q quotes the value", err)
	}
}
