package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var palette = map[string]string{
	"meshlens": "#1f77b4", "jaeger-badger": "#d62728", "jaeger-memory": "#ff7f0e", "otelcol": "#2ca02c",
}

// series is one line: offered load (x) against a value (y).
type series struct {
	name string
	x, y []float64
}

// medianSteps merges the repeats of one target's sweeps step by step (the
// ladder is the same in every repeat) into medians of offered load and of
// the value get returns.
func medianSteps(sweeps []sweep, get func(Step) float64) ([]float64, []float64) {
	n := 0
	for _, s := range sweeps {
		n = max(n, len(s.Steps))
	}
	var xs, ys []float64
	for i := range n {
		var ox, oy []float64
		for _, s := range sweeps {
			if i < len(s.Steps) {
				ox = append(ox, s.Steps[i].Offered)
				oy = append(oy, get(s.Steps[i]))
			}
		}
		xs = append(xs, Summarize(ox).Median)
		ys = append(ys, Summarize(oy).Median)
	}
	return xs, ys
}

// plot draws three panels side by side: accepted throughput, p99 latency
// and RSS against offered load (log x), one line per target.
func (h *harness) plot(wl, proto string, targets []string) string {
	unit := "spans/s"
	if proto == "als" {
		unit = "entries/s"
	}
	panels := []struct {
		title, ylab string
		logY        bool
		get         func(Step) float64
	}{
		{"accepted vs offered", "accepted " + unit, false, func(s Step) float64 { return s.Accepted }},
		{"p99 ack latency", "ms (log)", true, func(s Step) float64 { return math.Max(float64(s.P99)/1e6, 0.01) }},
		{"server RSS", "MiB", false, func(s Step) float64 { return float64(s.RSS) / (1 << 20) }},
	}
	const pw, ph, ml, mr, mt, mb = 330, 260, 60, 15, 30, 45
	W := len(panels)*(pw+ml+mr) + 10
	H := ph + mt + mb + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="16" font-size="13" font-weight="bold">%s — %s (x: offered %s, log scale; median of repeats)</text>`+"\n",
		html.EscapeString(wl), html.EscapeString(proto), unit)
	for pi, pn := range panels {
		var ss []series
		for _, t := range targets {
			_, sw := h.satSummary(wl, t, proto)
			if len(sw) == 0 {
				continue
			}
			x, y := medianSteps(sw, pn.get)
			ss = append(ss, series{name: t, x: x, y: y})
		}
		x0 := pi*(pw+ml+mr) + ml
		y0 := mt + 10
		minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, s := range ss {
			for i := range s.x {
				if s.x[i] > 0 {
					minX, maxX = math.Min(minX, s.x[i]), math.Max(maxX, s.x[i])
				}
				minY, maxY = math.Min(minY, s.y[i]), math.Max(maxY, s.y[i])
			}
		}
		if math.IsInf(minX, 0) {
			continue
		}
		if !pn.logY {
			minY = 0
		}
		if maxX <= minX {
			maxX = minX * 2
		}
		if maxY <= minY {
			maxY = minY + 1
		}
		lx := func(v float64) float64 {
			return float64(x0) + (math.Log10(v)-math.Log10(minX))/(math.Log10(maxX)-math.Log10(minX))*pw
		}
		ly := func(v float64) float64 {
			f := (v - minY) / (maxY - minY)
			if pn.logY {
				f = (math.Log10(v) - math.Log10(minY)) / (math.Log10(maxY) - math.Log10(minY))
			}
			return float64(y0) + ph - f*ph
		}
		fmt.Fprintf(&b, `<g><text x="%d" y="%d" font-weight="bold">%s</text>`, x0, y0-6, pn.title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, x0, y0, pw, ph)
		// x ticks at decades and 2x/5x.
		for e := math.Floor(math.Log10(minX)); e <= math.Ceil(math.Log10(maxX)); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if v < minX || v > maxX {
					continue
				}
				x := lx(v)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
					x, y0, x, y0+ph, x, y0+ph+14, fmtRate(v))
			}
		}
		// y ticks.
		for i := 0; i <= 4; i++ {
			v := minY + (maxY-minY)*float64(i)/4
			if pn.logY {
				v = math.Pow(10, math.Log10(minY)+(math.Log10(maxY)-math.Log10(minY))*float64(i)/4)
			}
			y := ly(v)
			lab := fmtRate(v)
			if pn.logY || maxY < 10 {
				lab = fmt.Sprintf("%.3g", v)
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
				x0, y, x0+pw, y, x0-4, y+4, lab)
		}
		if pi == 1 { // the 100 ms saturation bound
			if 100 >= minY && 100 <= maxY {
				y := ly(100)
				fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/><text x="%d" y="%.1f" text-anchor="end" fill="#555">100 ms</text>`,
					x0, y, x0+pw, y, x0+pw-2, y-3)
			}
		}
		if pi == 0 { // accepted = offered
			lo, hi := minX, math.Min(maxX, maxY)
			if hi > lo {
				// y = x is a curve on a log x axis: draw it point by point.
				var pts []string
				for i := 0; i <= 40; i++ {
					v := lo * math.Pow(hi/lo, float64(i)/40)
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", lx(v), ly(v)))
				}
				fmt.Fprintf(&b, `<polyline fill="none" stroke="#555" stroke-dasharray="4 3" points="%s"/><text x="%.1f" y="%.1f" fill="#555">accepted = offered</text>`,
					strings.Join(pts, " "), lx(hi)-95, ly(hi)+12)
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">offered %s</text>`, x0+pw/2, y0+ph+30, unit)
		fmt.Fprintf(&b, `<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">%s</text>`, x0-45, y0+ph/2, pn.ylab)
		for si, s := range ss {
			col := palette[s.name]
			if col == "" {
				col = "#333"
			}
			var pts []string
			for i := range s.x {
				if s.x[i] > 0 && (!pn.logY || s.y[i] > 0) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", lx(s.x[i]), ly(s.y[i])))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, col, strings.Join(pts, " "))
			for _, pt := range pts {
				xy := strings.Split(pt, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`, xy[0], xy[1], col)
			}
			if pi == 0 {
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`,
					x0+8, y0+10+si*14, col, x0+22, y0+14+si*14, html.EscapeString(s.name))
			}
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.String()
}
