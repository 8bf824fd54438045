package bench

import (
	"fmt"
	"image/color"
	"io"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart geometry: one panel per frame size (rows) and flow count
// (columns), each a horizontal bar per configuration.
const (
	panelWidth     = 6.2 * vg.Inch
	panelBase      = 1.1 * vg.Inch  // title and axis
	panelPerConfig = 0.36 * vg.Inch // one bar
	chartTitle     = 0.5 * vg.Inch
	chartDPI       = 110
)

// Bar colours by kind of configuration.
var (
	colorReference = color.RGBA{R: 0xbd, G: 0xbd, B: 0xbd, A: 0xff} // wire limit, plain redirect
	colorKernel    = color.RGBA{R: 0x96, G: 0x96, B: 0x96, A: 0xff}
	colorBaseline  = color.RGBA{R: 0xe6, G: 0x7e, B: 0x22, A: 0xff}
	colorRoute     = color.RGBA{R: 0x5d, G: 0xa5, B: 0xda, A: 0xff}
	colorOffload   = color.RGBA{R: 0x1f, G: 0x5f, B: 0xa8, A: 0xff}
	colorExtern    = color.RGBA{R: 0x2e, G: 0x9e, B: 0x6b, A: 0xff}
	colorFail      = color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}
)

func barColor(name string) color.Color {
	c, _ := configByName(name)
	switch {
	case name == Baseline:
		return colorBaseline
	case c.veth || c.redirect || c.tcRedirect:
		return colorReference
	case c.extern:
		return colorExtern
	case c.mode == "route":
		return colorRoute
	case c.mode == "offload":
		return colorOffload
	}
	return colorKernel
}

// shortLabel names a configuration in the chart: extern by the label it
// ran under.
func (r *Report) shortLabel(name string) string {
	if name == ConfigExtern && r.Settings.Extern != nil {
		return r.Settings.Extern.label()
	}
	if c, ok := configByName(name); ok {
		return c.short
	}
	return name
}

// SavePlot draws the chart into path as PNG.
func (r *Report) SavePlot(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	if err := r.WritePlot(f); err != nil {
		f.Close()
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}

// WritePlot draws the chart as PNG: for each frame size and flow count a
// panel with one bar per configuration (median Mpps, min..max as an error
// bar, the ratio to the baseline written beside it).
func (r *Report) WritePlot(w io.Writer) error {
	sizes, flows := r.Settings.FrameSizes, r.Settings.Flows
	if len(sizes) == 0 || len(flows) == 0 || len(r.Settings.Configs) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	plots := make([][]*plot.Plot, len(sizes))
	for i, s := range sizes {
		plots[i] = make([]*plot.Plot, len(flows))
		for j, f := range flows {
			p, err := r.panel(s, f)
			if err != nil {
				return err
			}
			plots[i][j] = p
		}
	}
	width := panelWidth * vg.Length(len(flows))
	height := chartTitle + vg.Length(len(sizes))*(panelBase+panelPerConfig*vg.Length(len(r.Settings.Configs)))
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(chartDPI), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)

	title := plot.New().Title.TextStyle
	title.Font.Size = vg.Points(15)
	title.XAlign = draw.XCenter
	title.YAlign = draw.YTop
	dc.FillText(title, vg.Point{X: width / 2, Y: height - vg.Points(8)}, r.chartTitle())

	tiles := draw.Tiles{
		Rows: len(sizes), Cols: len(flows),
		PadTop: chartTitle, PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(14),
		PadX: vg.Points(24), PadY: vg.Points(18),
	}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func (r *Report) chartTitle() string {
	t := "fastpath bench: Mpps forwarded, one core for generator + router + sink (median; bars: min..max; ratio to " + r.shortLabel(r.Baseline) + ")"
	if r.Settings.Split {
		t = "fastpath bench: Mpps forwarded by one router core (median; bars: min..max; ratio to " + r.shortLabel(r.Baseline) + ")"
	}
	if r.Machine.Kernel != "" {
		t += ", Linux " + r.Machine.Kernel
	}
	return t
}

// panel is the bar chart of one frame size and flow count.
func (r *Report) panel(size, flows int) (*plot.Plot, error) {
	p := plot.New()
	flowWord := "flows"
	if flows == 1 {
		flowWord = "flow"
	}
	p.Title.Text = fmt.Sprintf("%d-byte frames, %s %s", size, FlowsLabel(flows), flowWord)
	p.X.Label.Text = "Mpps"
	p.X.Min = 0
	grid := plotter.NewGrid()
	grid.Horizontal.Width = 0
	grid.Vertical.Color = color.Gray{Y: 0xe0}
	p.Add(grid)
	names := r.Settings.Configs
	n := len(names)
	labels := make([]string, n)
	var (
		errs   plotter.XErrors
		errXY  plotter.XYs
		text   plotter.XYLabels
		maxVal float64
	)
	for i, name := range names {
		y := float64(n - 1 - i) // first configuration on top
		labels[n-1-i] = r.shortLabel(name)
		c := r.Cell(name, size, flows)
		val, note, col := 0.0, "not run", color.Color(colorFail)
		switch {
		case c == nil:
		case c.Failed():
			note = "0 / FAIL"
		default:
			val, col = c.RxMpps.Median, barColor(name)
			note = fmt.Sprintf("%.2f", val)
			if ratio, ok := r.Ratio(c); ok && name != r.Baseline {
				note += fmt.Sprintf("  (%.1fx)", ratio)
			}
			if c.GenLimited {
				note += " gen-limited"
			}
			errXY = append(errXY, plotter.XY{X: val, Y: y})
			errs = append(errs, struct{ Low, High float64 }{val - c.RxMpps.Min, c.RxMpps.Max - val})
			maxVal = max(maxVal, c.RxMpps.Max)
		}
		bar, err := plotter.NewBarChart(plotter.Values{val}, panelPerConfig*0.7)
		if err != nil {
			return nil, err
		}
		bar.Horizontal = true
		bar.XMin = y
		bar.Color = col
		bar.LineStyle.Width = 0
		p.Add(bar)
		labelX := val
		if c != nil && !c.Failed() {
			labelX = c.RxMpps.Max // right of the error bar
		}
		text.XYs = append(text.XYs, plotter.XY{X: labelX, Y: y})
		text.Labels = append(text.Labels, note)
	}
	if len(errXY) > 0 {
		eb, err := plotter.NewXErrorBars(struct {
			plotter.XYs
			plotter.XErrors
		}{errXY, errs})
		if err != nil {
			return nil, err
		}
		eb.LineStyle.Width = vg.Points(1)
		eb.CapWidth = vg.Points(5)
		p.Add(eb)
	}
	lab, err := plotter.NewLabels(text)
	if err != nil {
		return nil, err
	}
	lab.Offset = vg.Point{X: vg.Points(6), Y: -vg.Points(4)}
	for i := range lab.TextStyle {
		lab.TextStyle[i].Font.Size = vg.Points(9)
	}
	p.Add(lab)
	p.NominalY(labels...)
	p.Y.Tick.Label.Font.Size = vg.Points(10)
	// Room for the value labels right of the longest bar.
	p.X.Max = max(maxVal*1.45, 0.1)
	p.X.Tick.Marker = plot.DefaultTicks{}
	return p, nil
}
