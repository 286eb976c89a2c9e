package simulator

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// fileUpdate sends an 0302 file update for the step's card (iso/README.md,
// "File updates"): file add locks the card with the step's reason, file
// delete unlocks it. expect: code / reason (DE39), lock (DE120).
func (r *run) fileUpdate(ctx context.Context, st *Step) (string, error) {
	if r.cfg.Network == nil {
		return "", errors.New("no ISO link")
	}
	t, _, err := r.buildTxn(st)
	if err != nil {
		return "", err
	}
	code := map[string]string{"add": "1", "delete": "3"}[st.File]
	if code == "" {
		return "", fmt.Errorf("file %q: want add or delete", st.File)
	}
	n := r.cfg.Network
	m := n.NewMessage(st.MTI)
	stan := st.STAN
	if stan == "" {
		stan = n.NextSTAN()
	}
	set := map[int]string{2: t.PAN, 7: time.Now().UTC().Format("0102150405"), 11: stan, 91: code, 101: "NEGATIVE"}
	if st.RRN != "" {
		set[37] = st.RRN
	}
	if code == "1" {
		if _, err := parseInt("reason", st.Reason); err != nil {
			return "", err
		}
		set[120] = st.Reason
	}
	for id, v := range set {
		if err := m.Field(id, v); err != nil {
			return "", fmt.Errorf("0302: DE%d: %w", id, err)
		}
	}
	timeout := r.cfg.Timeout
	if st.Timeout != "" {
		if timeout, err = time.ParseDuration(st.Timeout); err != nil {
			return "", fmt.Errorf("timeout %q: %w", st.Timeout, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	resp, err := n.Send(sctx, m)
	cancel()
	if err != nil {
		return "", fmt.Errorf("0302 %s: no answer: %w", MaskPAN(t.PAN), err)
	}
	de39, _ := resp.GetString(39)
	lock := "none"
	if resp.GetField(120) != nil {
		lock, _ = resp.GetString(120)
	}
	r.set(st.As, "mti", st.MTI, "stan", stan, "code", de39, "lock", lock)
	detail := fmt.Sprintf("%s %s file %s -> %s lock %s", st.MTI, MaskPAN(t.PAN), st.File, de39, lock)
	if e := st.Expect; e.Code != "" || e.Reason != "" {
		want, err := expectedCode(n.Profile(), e.Code, e.Reason)
		if err != nil {
			return "", err
		}
		if de39 != want {
			return "", fmt.Errorf("DE39: want %s, got %s (%s)", want, de39, detail)
		}
	}
	if st.Expect.Lock != "" && st.Expect.Lock != lock {
		return "", fmt.Errorf("DE120: want lock %s, got %s (%s)", st.Expect.Lock, lock, detail)
	}
	return detail, nil
}
