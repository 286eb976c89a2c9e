package simulator

import (
	"bytes"
	"encoding/xml"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot"
)

func tickLabels(ticks []plot.Tick) []string {
	var out []string
	for _, t := range ticks {
		if t.Label != "" {
			out = append(out, t.Label)
		}
	}
	return out
}

// TestLinearTicks: whole-number axes (seconds) are labelled at whole
// multiples of a 1-2-5 step from 0, never at 1.5; other axes at a 1-2-5
// step; at most steps+1 labels.
func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi float64
		steps  int
		whole  bool
		want   []string
	}{
		{"10 s run", 0, 10, 10, true, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}},
		{"9 s span", 0, 9, 10, true, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{"3 s run", 0, 3, 10, true, []string{"0", "1", "2", "3"}},
		{"30 s run", 0, 30, 10, true, []string{"0", "5", "10", "15", "20", "25", "30"}},
		{"5 min run", 0, 300, 10, true, []string{"0", "50", "100", "150", "200", "250", "300"}},
		{"rates", 1000, 8000, 10, true, []string{"1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000"}},
		{"messages/s", 0, 400, 6, false, []string{"0", "100", "200", "300", "400"}},
		{"small", 0, 0.6, 6, false, []string{"0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks := linearTicks(tc.lo, tc.hi, tc.steps, tc.whole)
			for _, tk := range ticks {
				if tk.Value < tc.lo-1e-9 || tk.Value > tc.hi+1e-9 {
					t.Errorf("tick %v outside [%v, %v]", tk.Value, tc.lo, tc.hi)
				}
			}
			if got := tickLabels(ticks); !slices.Equal(got, tc.want) {
				t.Errorf("labels %v, want %v", got, tc.want)
			}
		})
	}
	// Every whole-number axis from 1 s to 10 min.
	for hi := 1; hi <= 600; hi++ {
		labels := 0
		for _, tk := range linearTicks(0, float64(hi), 10, true) {
			if tk.Label == "" {
				continue
			}
			labels++
			if _, err := strconv.Atoi(tk.Label); err != nil {
				t.Fatalf("0..%d s: label %q is not a whole number", hi, tk.Label)
			}
		}
		if labels < 2 || labels > 11 {
			t.Fatalf("0..%d s: %d labels", hi, labels)
		}
	}
}

// TestPlotOddData: no data, one point, a value that is not a number or
// infinite: the figure still renders (the bad points are left out).
func TestPlotOddData(t *testing.T) {
	for name, pts := range map[string][][2]float64{
		"none": nil, "one point": {{3, 7}}, "NaN": {{0, 1}, {1, math.NaN()}, {2, 3}}, "Inf": {{0, 1}, {math.Inf(1), 2}},
	} {
		for _, logY := range []bool{false, true} {
			fig := Figure{{Title: name, LogY: logY, WholeX: true, HLine: 5, HLineLabel: "ref", Series: []Series{{Name: "s", Color: "#123456", Points: pts}}}}
			if _, err := fig.SVG(); err != nil {
				t.Errorf("%s (log %v): %v", name, logY, err)
			}
		}
	}
}

// TestLogTicks: a latency axis is labelled 1, 2, 5 of each decade.
func TestLogTicks(t *testing.T) {
	want := []string{"0.5", "1", "2", "5", "10"}
	if got := tickLabels(logTicks(0.5, 10)); !slices.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
}

// testReport is a 10-second run whose answers fall behind in seconds 4-6.
func testReport() *Report {
	r := &Report{Label: "test", RequestedRate: 300, TargetRate: 300, AchievedRate: 300, WindowSeconds: 10}
	for s := range 10 {
		st := SecondStats{Second: s, Sent: 300, Answers: 300, P50: 1 + float64(s)/10, P99: 4 + float64(s), Max: 20 + float64(s)}
		if s >= 4 && s <= 6 {
			st.Answers, st.Timeouts = 220, 80
		}
		r.Timeline = append(r.Timeline, st)
	}
	return r
}

// svgTexts are the texts of an SVG document, which must be well-formed.
func svgTexts(t *testing.T, b []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var texts []string
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return texts
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			inText = v.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, strings.TrimSpace(string(v)))
			}
		}
	}
}

// TestWritePlot: the load plot in each format the CLI offers. The SVG has
// both charts, whole-second ticks, a legend naming every line and broken
// lines for max, sent and the target; the PNG shows both the answered and
// the sent line; the HTML page embeds the SVG after the summary.
func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	r := testReport()
	for _, name := range []string{"load.svg", "load.png", "load.html"} {
		if err := r.WritePlot(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	svg, err := os.ReadFile(filepath.Join(dir, "load.svg"))
	if err != nil {
		t.Fatal(err)
	}
	texts := svgTexts(t, svg)
	for _, want := range []string{"Latency from scheduled send time, per second", "Messages per second", "seconds since start",
		"p50", "p99", "max", "sent", "answered", "target", "0", "1", "5", "9", "10"} {
		if !slices.Contains(texts, want) {
			t.Errorf("SVG lacks the text %q (has %q)", want, texts)
		}
	}
	for _, bad := range []string{"1.5", "4.5", "7.5"} {
		if slices.Contains(texts, bad) {
			t.Errorf("SVG has a tick %q on the seconds axis", bad)
		}
	}
	if n := strings.Count(string(svg), "stroke-dasharray"); n < 3 {
		t.Errorf("SVG has %d broken lines, want max, sent and target at least", n)
	}

	// In the usual run every message is answered: the two lines coincide
	// and the sent line must still show over the whole run, not only in
	// the legend.
	all := testReport()
	for i := range all.Timeline {
		all.Timeline[i].Answers, all.Timeline[i].Timeouts = all.Timeline[i].Sent, 0
	}
	if err := all.WritePlot(filepath.Join(dir, "load.png")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "load.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 960 || b.Dy() < 600 {
		t.Errorf("PNG is %dx%d, want 960 wide with two charts", b.Dx(), b.Dy())
	}
	for name, c := range map[string]color.RGBA{"sent": {0x2c, 0xa0, 0x2c, 0xff}, "answered": {0xff, 0xbb, 0x78, 0xff}} {
		n := pixelsNear(img, c)
		if n < 200 {
			t.Errorf("PNG: the %s line covers %d pixels, want it visible", name, n)
		}
	}

	page, err := os.ReadFile(filepath.Join(dir, "load.html"))
	if err != nil {
		t.Fatal(err)
	}
	p := string(page)
	if !strings.HasPrefix(p, "<!doctype html>") || strings.Contains(p, "<?xml") || strings.Index(p, "<pre>test: ") > strings.Index(p, "<svg") ||
		!strings.Contains(p, "Messages per second") {
		t.Errorf("HTML page is not the summary followed by the inline SVG:\n%.400s", p)
	}
}

// pixelsNear counts the pixels of img within a small distance of c.
func pixelsNear(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			d := absDiff(r>>8, uint32(c.R)) + absDiff(g>>8, uint32(c.G)) + absDiff(bl>>8, uint32(c.B))
			if d < 24 {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
