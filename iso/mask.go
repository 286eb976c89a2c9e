package iso

import "strings"

// MaskPAN returns pan fit for a log line: at most the first 6 and last 4
// digits in clear (PCI DSS 3.4), the rest as '*'. Shorter values, which are
// not real PANs, keep less: the last 4 when at least 8 characters long,
// nothing below that.
func MaskPAN(pan string) string {
	n := len(pan)
	switch {
	case n == 0:
		return ""
	case n >= 13:
		return pan[:6] + strings.Repeat("*", n-10) + pan[n-4:]
	case n >= 8:
		return strings.Repeat("*", n-4) + pan[n-4:]
	}
	return strings.Repeat("*", n)
}
