package simulator

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	Color  string       // #rrggbb
	Points [][2]float64 // x, y
	// Dashed and Dotted draw the line broken, so that a line drawn over
	// another with the same values leaves it visible.
	Dashed, Dotted bool
	// Width is the line width in points (default 1.5).
	Width float64
	// Marks draws a dot at every point (for few, separate measurements);
	// NoLine leaves the dots unconnected.
	Marks, NoLine bool
}

// Plot is one chart: lines over an x axis, the legend beside it.
type Plot struct {
	Title, XLabel, YLabel string
	// Series are drawn in order: later ones on top.
	Series []Series
	// LogY draws the y axis logarithmically (latencies).
	LogY bool
	// HLine draws a horizontal reference line at this y (0: none).
	HLine      float64
	HLineLabel string
	// WholeX puts x ticks on whole numbers only (seconds, rates).
	WholeX bool
	// XMin and XMax fix the x range when XMax > XMin (else: the data's).
	XMin, XMax float64
}

// Figure is plots stacked top to bottom in one picture, their data areas
// aligned so that a shared x axis reads straight down. It is rendered by
// gonum.org/v1/plot.
type Figure []Plot

// Picture sizes in points (1/72 in); at 96 dpi a point is 4/3 pixel.
const (
	FigureWidth = 720 * vg.Inch / 72
	PanelHeight = 260 * vg.Inch / 72
)

// SVG renders the figure as an SVG document, PanelHeight per plot.
func (f Figure) SVG() ([]byte, error) {
	c := vgsvg.New(FigureWidth, PanelHeight*vg.Length(max(len(f), 1)))
	if err := f.draw(c); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("rendering SVG: %w", err)
	}
	// The text is measured with Liberation Sans, which has Arial's
	// metrics: name fallbacks so that a viewer without it keeps the layout.
	out := bytes.ReplaceAll(b.Bytes(), []byte("font-family:Liberation Sans;"),
		[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
	return out, nil
}

// InlineSVG is the SVG without its XML prolog, for an HTML page.
func (f Figure) InlineSVG() ([]byte, error) {
	b, err := f.SVG()
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(b, []byte("<svg")); i > 0 {
		b = b[i:]
	}
	return b, nil
}

// PNG renders the figure as a PNG image at 96 dpi.
func (f Figure) PNG() ([]byte, error) {
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(FigureWidth, PanelHeight*vg.Length(max(len(f), 1))), vgimg.UseDPI(96),
		vgimg.UseBackgroundColor(color.White))}
	if err := f.draw(c); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("rendering PNG: %w", err)
	}
	return b.Bytes(), nil
}

// sans is the typeface of every text of a figure.
func sans(size vg.Length) font.Font {
	return font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
}

func (f Figure) draw(c vg.CanvasSizer) error {
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	if len(f) == 0 {
		return nil
	}
	plots := make([][]*plot.Plot, len(f))
	legends := make([]plot.Legend, len(f))
	var legendW vg.Length
	for i, p := range f {
		gp, leg, err := p.build()
		if err != nil {
			return fmt.Errorf("plot %q: %w", p.Title, err)
		}
		plots[i] = []*plot.Plot{gp}
		legends[i] = leg
		legendW = max(legendW, legendWidth(leg, p))
	}
	const pad = 8
	area := draw.Crop(dc, 0, -legendW-2*pad, 0, 0)
	tiles := draw.Tiles{Rows: len(f), Cols: 1, PadTop: pad, PadBottom: pad, PadLeft: pad, PadY: 3 * pad}
	aligned := plot.Align(plots, tiles, area)
	for i := range f {
		cv := aligned[i][0]
		plots[i][0].Draw(cv)
		title := plots[i][0].Title
		top := cv.Max.Y - title.TextStyle.Rectangle(title.Text).Size().Y - title.Padding - pad
		legends[i].Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: area.Max.X + pad, Y: cv.Min.Y},
			Max: vg.Point{X: dc.Max.X - pad, Y: top},
		}})
	}
	return nil
}

func legendWidth(l plot.Legend, p Plot) vg.Length {
	var w vg.Length
	for _, name := range append(seriesNames(p), p.HLineLabel) {
		w = max(w, l.TextStyle.Rectangle(name).Max.X)
	}
	return l.ThumbnailWidth + l.TextStyle.Rectangle(" ").Max.X + w
}

func seriesNames(p Plot) []string {
	names := make([]string, len(p.Series))
	for i, s := range p.Series {
		names[i] = s.Name
	}
	return names
}

// build makes the gonum plot and its legend (drawn beside it, not over
// the data).
func (p Plot) build() (*plot.Plot, plot.Legend, error) {
	gp := plot.New()
	gp.Title.Text = p.Title
	gp.Title.TextStyle.Font = sans(12)
	gp.Title.Padding = vg.Points(6)
	gp.X.Label.Text, gp.Y.Label.Text = p.XLabel, p.YLabel
	for _, ax := range []*plot.Axis{&gp.X, &gp.Y} {
		ax.Label.TextStyle.Font = sans(10)
		ax.Tick.Label.Font = sans(9)
	}
	leg := plot.NewLegend()
	leg.TextStyle.Font = sans(10)
	leg.Top, leg.Left = true, true
	leg.ThumbnailWidth = vg.Points(28)
	leg.Padding = vg.Points(3)

	xmin, xmax, ymin, ymax := p.ranges()
	gp.X.Min, gp.X.Max = xmin, xmax
	gp.Y.Min, gp.Y.Max = ymin, ymax
	gp.X.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick { return linearTicks(lo, hi, 10, p.WholeX) })
	if p.LogY {
		gp.Y.Scale = plot.LogScale{}
		gp.Y.Tick.Marker = plot.TickerFunc(logTicks)
	} else {
		gp.Y.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick { return linearTicks(lo, hi, 6, false) })
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 0xe4}
	grid.Horizontal.Color = color.Gray{Y: 0xe4}
	gp.Add(grid)

	// The reference line goes under the data, its legend entry last.
	var refLine *plotter.Line
	if p.HLine > 0 {
		ref, err := plotter.NewLine(plotter.XYs{{X: xmin, Y: p.HLine}, {X: xmax, Y: p.HLine}})
		if err != nil {
			return nil, leg, err
		}
		ref.Color = color.RGBA{R: 0xcc, A: 0xff}
		ref.Width = vg.Points(1)
		ref.Dashes = []vg.Length{vg.Points(9), vg.Points(4)}
		gp.Add(ref)
		refLine = ref
	}
	for _, s := range p.Series {
		xys := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			if p.LogY && pt[1] <= 0 || !finite(pt[0]) || !finite(pt[1]) {
				continue // no place on the axes
			}
			xys = append(xys, plotter.XY{X: pt[0], Y: pt[1]})
		}
		if len(xys) == 0 {
			continue
		}
		clr, err := parseColor(s.Color)
		if err != nil {
			return nil, leg, fmt.Errorf("series %q: %w", s.Name, err)
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, leg, fmt.Errorf("series %q: %w", s.Name, err)
		}
		line.Color = clr
		line.Width = vg.Points(cmp.Or(s.Width, 1.5))
		switch {
		case s.Dashed:
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		case s.Dotted:
			line.Dashes = []vg.Length{vg.Points(1.5), vg.Points(2)}
		}
		var thumbs []plot.Thumbnailer
		if !s.NoLine || !s.Marks {
			gp.Add(line)
			thumbs = append(thumbs, line)
		}
		if s.Marks {
			dots, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, leg, fmt.Errorf("series %q: %w", s.Name, err)
			}
			dots.GlyphStyle = draw.GlyphStyle{Color: clr, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
			gp.Add(dots)
			thumbs = append(thumbs, dots)
		}
		leg.Add(s.Name, thumbs...)
	}
	if refLine != nil {
		leg.Add(p.HLineLabel, refLine)
	}
	return gp, leg, nil
}

// ranges are the axes' ranges: x from the data unless fixed; y from 0
// (linear) or from the nearest 1-2-5 value below the least positive point
// (log) to the nearest nice value above the greatest, the reference line
// included.
func (p Plot) ranges() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax, ymin, ymax = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if p.LogY && pt[1] <= 0 || !finite(pt[0]) || !finite(pt[1]) {
				continue
			}
			xmin, xmax = math.Min(xmin, pt[0]), math.Max(xmax, pt[0])
			ymin, ymax = math.Min(ymin, pt[1]), math.Max(ymax, pt[1])
		}
	}
	if p.HLine > 0 {
		ymin, ymax = math.Min(ymin, p.HLine), math.Max(ymax, p.HLine)
	}
	if p.XMax > p.XMin {
		xmin, xmax = p.XMin, p.XMax
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0, 1
	}
	if xmax <= xmin {
		xmin, xmax = xmin-0.5, xmax+0.5
	}
	if math.IsInf(ymin, 0) {
		ymin, ymax = 1, 1
	}
	if p.LogY {
		ymin, ymax = floor125(ymin), ceil125(ymax*1.0001)
		if ymax <= ymin {
			ymax = ceil125(ymin * 1.5)
		}
		return xmin, xmax, ymin, ymax
	}
	return xmin, xmax, 0, niceCeil(ymax * 1.05)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// floor125 and ceil125 round a positive v down or up to the 1-2-5
// sequence (..., 0.5, 1, 2, 5, 10, ...).
func floor125(v float64) float64 {
	if v <= 0 {
		return 1
	}
	decade := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if m*decade <= v*(1+1e-9) {
			return m * decade
		}
	}
	return decade
}

func ceil125(v float64) float64 {
	if v <= 0 {
		return 1
	}
	decade := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if m*decade >= v*(1-1e-9) {
			return m * decade
		}
	}
	return 10 * decade
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// linearTicks labels multiples of a 1-2-5 step, at most steps+1 of them,
// and marks minor ticks between; with whole, steps are whole numbers (a
// 10 s run reads 0, 1, 2 ... 10, never 1.5).
func linearTicks(lo, hi float64, steps int, whole bool) []plot.Tick {
	span := hi - lo
	if !(span > 0) || math.IsInf(span, 0) {
		return []plot.Tick{{Value: lo, Label: formatTick(lo, 1)}}
	}
	step, mant := 0.0, 0.0
	for e := math.Floor(math.Log10(span / 10)); step == 0; e++ {
		for _, m := range []float64{1, 2, 5} {
			s := m * math.Pow(10, e)
			if span/s <= float64(steps)+1e-9 && (!whole || s >= 1) {
				step, mant = s, m
				break
			}
		}
	}
	minor := step / 5
	if mant == 2 {
		minor = step / 2
	}
	if whole && minor < 1 {
		minor = 0
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step-1e-9) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: formatTick(v, step)})
	}
	if minor > 0 {
		for v := math.Ceil(lo/minor-1e-9) * minor; v <= hi+minor*1e-9; v += minor {
			if r := math.Mod(math.Abs(v), step); r > minor/2 && step-r > minor/2 {
				ticks = append(ticks, plot.Tick{Value: v})
			}
		}
	}
	return ticks
}

// logTicks labels 1, 2 and 5 of every decade (only 1 past four decades)
// and marks the other digits.
func logTicks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	for d := d0; d <= d1; d++ {
		decade := math.Pow(10, d)
		for m := 1.0; m <= 9; m++ {
			v := m * decade
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (d1-d0 <= 4 && (m == 2 || m == 5)) {
				t.Label = formatTick(v, v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// formatTick writes v with as many decimals as step needs.
func formatTick(v, step float64) string {
	if math.Abs(v) < step*1e-9 {
		return "0"
	}
	prec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func parseColor(s string) (color.Color, error) {
	h := strings.TrimPrefix(s, "#")
	if s == "" {
		return color.Black, nil
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil || len(h) != 6 {
		return nil, fmt.Errorf("color %q: want #rrggbb", s)
	}
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}, nil
}
