package tui

import (
	"fmt"
	"path"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
	"github.com/throttle-dev/throttle/probes"
)

// View renders the whole screen: exactly height lines of exactly width cells.
func (m Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	// No WindowTitle: Bubble Tea v2 cannot restore the terminal's title on exit (it writes an
	// empty one), and a shell prompt that does not set its own would be left with none.
	return v
}

// Render returns the screen as text, for the View and for golden frames.
func (m Model) Render() string {
	w, h := max(m.width, 20), max(m.height, 5)
	var lines []string
	lines = append(lines, m.header(w)...)
	body := h - len(lines) - 1
	switch {
	case m.help && m.replaying():
		lines = append(lines, m.replayHelp(w, body)...)
	case m.help:
		lines = append(lines, m.helpScreen(w, body)...)
	default:
		lines = append(lines, m.body(w, body)...)
	}
	for len(lines) < h-1 {
		lines = append(lines, strings.Repeat(" ", w))
	}
	lines = append(lines[:h-1], m.keyLine(w))
	return strings.Join(lines, "\n")
}

// layout decides the rows of each optional panel for a body of n rows. Panels give way in
// order of least use — changes, then errors, then charts — rather than wrap.
type layout struct{ knobs, charts, errors, advisor, changes int }

func planLayout(n, width, knobRows, advisorRows, errorRows int) layout {
	var l layout
	take := func(rows int) bool {
		if n >= rows {
			n -= rows
			return true
		}
		return false
	}
	if take(knobRows) {
		l.knobs = knobRows
	}
	switch { // the advisor's words wrap rather than cut; on a short screen its first line stays
	case take(advisorRows):
		l.advisor = advisorRows
	case take(2):
		l.advisor = 2
	}
	switch {
	case take(8):
		l.charts = 8
	case take(4):
		l.charts = 4
	}
	if take(errorRows) {
		l.errors = errorRows
	}
	if take(2) {
		l.changes = 2
	}
	// Room to spare goes to the charts first, then errors and changes.
	if l.charts > 0 {
		grow := min(n, max(0, 24-l.charts)*1)
		if width >= 120 {
			grow = min(n, 26-l.charts)
		}
		grow = max(grow, 0) &^ 1
		l.charts += grow
		n -= grow
	}
	if l.errors > 0 {
		g := min(n, 4)
		l.errors += g
		n -= g
	}
	if l.changes > 0 {
		l.changes += n
	}
	return l
}

func (m Model) body(w, n int) []string {
	advice := m.advisorLines(w)
	// The errors panel at its least: its hosts, and its first two lines of errors.
	errorRows := 1 + len(m.hostLines(w)) + min(len(m.errorLines(w)), 2)
	l := planLayout(n, w, m.knobRows(w), 1+len(advice), errorRows)
	var out []string
	if l.knobs > 0 {
		out = append(out, m.knobs(w)...)
	}
	if l.charts > 0 {
		out = append(out, m.charts(w, l.charts)...)
	}
	if l.errors > 0 {
		out = append(out, m.errorPanel(w, l.errors)...)
	}
	if l.advisor > 0 {
		title := "advisor"
		switch sum := m.snap.Summary(); {
		case !m.snap.Ended.IsZero() && !m.lost(): // the final screen: the summary, in its words
			title = fmt.Sprintf("summary · %s in %s", sum.Ended(), sum.Elapsed.Round(time.Millisecond))
		case m.opt.Auto:
			title = "advisor · auto on"
		}
		out = append(out, m.rule(title, "", w))
		out = append(out, advice[:l.advisor-1]...)
	}
	if l.changes > 0 {
		out = append(out, m.changePanel(w, l.changes)...)
	}
	return out
}

// header is the top three lines: how far, how fast, how healthy.
func (m Model) header(w int) []string {
	s, st := m.snap, m.styles
	elapsed := s.At.Sub(s.Started)
	if !s.Ended.IsZero() {
		elapsed = s.Ended.Sub(s.Started)
	}
	if s.Started.IsZero() {
		elapsed = 0
	}
	// A shared job's coordinator counts the job's rows, every host's, against the input's
	// total: the bar and the ETA are the job's, not this host's share of it.
	done, of, unit := s.Done(), s.Total, " items"
	eta, etaOK := s.ETA()
	if j := m.hosts.Job; j != nil && j.Total > 0 {
		done, of, unit = j.Rows, j.Total, " job rows"
		eta, etaOK = j.ETA, j.ETA > 0 && s.Ended.IsZero()
	}
	total := "unknown total"
	if of >= 0 {
		total = human.Count(of) + unit
	}
	right := m.stateWord() + "  " + human.Clock(elapsed)
	if etaOK {
		right += "  ETA " + human.Clock(eta)
	}
	if m.replaying() { // the position is the elapsed time, and an ETA of the past is noise
		right = m.stateWord() + "  " + m.replayLabel()
	}
	lines, moved := titleLines(st.Title.Render(" throttle ")+" ", m.opt.Title, " · "+total, right, w, of >= 0)

	frac := 0.0
	if of > 0 {
		frac = float64(done) / float64(of)
	}
	tail := fmt.Sprintf(" %5.1f%%  %s / %s", 100*frac, human.Count(done), human.Count(of))
	if moved { // the first line had no room for the count of items: it ends this one
		tail += unit
	}
	if of < 0 {
		tail = fmt.Sprintf("  %s done", human.Count(done))
		frac = 0
	}
	barW := max(w-ansi.StringWidth(tail)-1, 4)
	line2 := " " + st.Bar.Render(bar(frac, barW-1)) + tail

	lines = append(lines, fit(line2, w))
	return append(lines, m.ratesLines(w)...)
}

// ratesLines is the header's line of how fast and how healthy, each rate with its window
// (probes.Measure's): the last seconds while the run goes, the whole run once it ended; where
// it does not fit one line, rateLines splits it, never cuts.
func (m Model) ratesLines(w int) []string {
	s, f := m.snap, m.fig
	failed := "   failed " + m.health(s.Failed > 0, human.Count(s.Failed))
	retries := "   retries " + human.Count(s.Retries)
	if q := quotaText(s); q != "" {
		retries += "   " + m.health(s.Quota.Remaining == 0, q)
	}
	share := m.health(f.TooMany > 0, fmt.Sprintf("%.1f%%", 100*f.TooManyShare()))
	var rate, short string
	if f.Whole { // the run is over: its own numbers, not those of a last window
		rate = fmt.Sprintf("whole run: %.1f calls/s · %s × 429 (%s)", f.CallsPerSecond(), human.Count(f.TooMany), share)
	} else {
		cps := "– calls/s"
		if f.Measured() {
			cps = fmt.Sprintf("%.0f calls/s", f.CallsPerSecond())
		}
		capLong, capShort := "", ""
		switch r, eff := probes.EffectiveRate(s.Settings, s.Effective); {
		case eff:
			capLong, capShort = " of "+engine.FormatComputedRate(r)+" effective cap", " of "+engine.FormatComputedRate(r)+" cap"
		case r > 0:
			capLong = " of " + engine.FormatRate(r) + " cap"
			capShort = capLong
		}
		window := f.Window()
		if f.SinceChange && f.Measured() {
			window += " since the change"
		}
		tm := " · 429s " + share
		if hw := f.HealthWindow(); hw != f.Window() {
			tm += " (" + hw + ")" // their window outlasts a cut of the effective rate
		}
		rate, short = window+": "+cps+capLong+tm, f.Window()+": "+cps+capShort+tm
		// At the design width "calls/s" gives way to "/s" (the chart below says calls/s)
		// if that keeps the counts on the line; otherwise they take a line of their own.
		narrow := strings.ReplaceAll(counts(s.OK, failed, retries), "   ", "  ")
		compact := window + ": " + strings.Replace(cps, " calls/s", "/s", 1) + capShort + tm
		if f.Measured() && ansi.StringWidth(" "+short+narrow) > w && ansi.StringWidth(" "+compact+narrow) <= w {
			short = compact
		}
	}
	return rateLines(rate, short, counts(s.OK, failed, retries), w)
}

// counts is the header's run of counts, each led by three spaces.
func counts(ok int64, failed, retries string) string {
	return "   ok " + human.Count(ok) + failed + retries
}

// titleLines is the header's first line: the job on the left, its state and times on the
// right. The state and times matter most; the count of items can end the progress line
// instead (moved: it must); then a path in the title gives way to its base name (the window's
// title keeps it whole), then the badge. A title that still leaves no room is cut rather than
// push the state off the first line; on a screen too narrow even for that, the right part
// takes a line of its own.
func titleLines(badge, title, total, right string, w int, movable bool) (lines []string, moved bool) {
	room := w - ansi.StringWidth(right) - 2
	short := baseNames(title)
	variants := []string{badge + title + total, badge + title, badge + short + total, badge + short,
		" " + title + total, " " + title, " " + short + total, " " + short}
	for i, left := range variants {
		if moves := i%2 == 1; (!moves || movable) && ansi.StringWidth(left) <= room {
			return []string{spread(left, right, w)}, moves
		}
	}
	if room >= 16 {
		return []string{spread(ansi.Truncate(" "+short, room, "…"), right, w)}, movable
	}
	return []string{fit(" "+title+total, w), spread("", right, w)}, false
}

// baseNames shortens each path in a job's title ("sim · /srv/in/ids.txt") to its base name.
func baseNames(title string) string {
	f := strings.Split(title, " ")
	for i, word := range f {
		for _, p := range []string{"/", "./", "../", "~/"} {
			if strings.HasPrefix(word, p) && len(word) > len(p) {
				f[i] = path.Base(word)
				break
			}
		}
	}
	return strings.Join(f, " ")
}

// rateLines is the header's line of how fast and how healthy: counts is a run of figures
// each led by three spaces. It takes the shorter word for the cap, then narrower gaps, then
// two lines (the rate, then the counts packed on as many lines as they need); it never cuts.
func rateLines(rate, short, counts string, w int) []string {
	narrow := strings.ReplaceAll(counts, "   ", "  ")
	for _, l := range []string{" " + rate + counts, " " + short + counts, " " + rate + narrow, " " + short + narrow} {
		if !strings.HasPrefix(l, "  ") && ansi.StringWidth(l) <= w {
			return []string{fit(l, w)}
		}
	}
	if short != "" && ansi.StringWidth(" "+rate) > w {
		rate = short
	}
	out := []string{fit(" "+rate, w)}
	for _, l := range pack(strings.Split(strings.TrimPrefix(narrow, "  "), "  "), "  ", w-1) {
		out = append(out, fit(" "+l, w))
	}
	return out
}

func (m Model) stateWord() string {
	s, st := m.snap, m.styles
	switch {
	case !s.Ended.IsZero() && s.State == engine.Done:
		return st.Good.Render("✓ done")
	case !s.Ended.IsZero() && m.lost():
		return st.Warn.Render("■ job gone, last seen")
	case !s.Ended.IsZero():
		return st.Warn.Render("■ " + s.Summary().Ended())
	case s.State == engine.Running && s.HoldUntil.After(s.At):
		return st.Warn.Render("◇ held")
	case s.State == engine.Running:
		return st.Accent.Render("● running")
	case s.State == engine.Paused:
		return st.Warn.Render("‖ paused")
	default:
		return st.Warn.Render("◐ " + s.State.String())
	}
}

func (m Model) health(bad bool, s string) string {
	if bad {
		return m.styles.Bad.Render(s)
	}
	return s
}

// knobs: each knob beside its keys and beside what it drives.
func (m Model) knobs(w int) []string {
	s, st := m.snap, m.styles
	set := s.Settings
	ceiling := "none"
	if set.MaxParallelism > 0 {
		ceiling = fmt.Sprint(set.MaxParallelism)
	}
	pace := "none"
	if set.Pace > 0 {
		pace = set.Pace.String()
	}
	k := st.Key.Render
	leftW := 40
	par := []string{fmt.Sprintf(" parallelism %4d  max %-5s", set.Parallelism, ceiling)}
	rate := []string{fmt.Sprintf(" rate  %10s  burst %-4d", engine.FormatRate(set.Rate), set.Burst)}
	// While an effective value binds, its line says both it and the ceiling the keys turn;
	// the rest of the knob's line follows on a line of its own, in its usual columns.
	if _, eff := probes.EffectiveParallelism(set, s.Effective); eff {
		par = []string{" " + probes.ParallelismText(set, s.Effective), fmt.Sprintf("%19smax %-5s", "", ceiling)}
	}
	if _, eff := probes.EffectiveRate(set, s.Effective); eff {
		rate = []string{" " + probes.RateText(set, s.Effective), fmt.Sprintf("%19sburst %-4d", "", set.Burst)}
	}
	pc := []string{fmt.Sprintf(" pace  %10s", pace)}
	if !m.replaying() { // no key turns a recording's knobs
		par[len(par)-1] += fmt.Sprintf(" %s ±1 %s ×2", k("↑↓"), k("⇞⇟"))
		pc[0] += fmt.Sprintf("             %s ±step", k("[ ]"))
		rate[len(rate)-1] += fmt.Sprintf("  %s ±10%%", k("+ -"))
	}
	left := append(append(par, pc...), rate...)
	by := s.ByState
	// The workers beside the knobs; under them, at full width, on a screen too narrow for both.
	stacked := w-leftW-1 < minWorkersW
	rightW := w - leftW - 1
	if stacked {
		rightW = w - 1
	}
	right := m.workerStrip(rightW)
	counts := []string{fmt.Sprintf("calling %d", by[engine.WorkerCalling])}
	if what, n := s.Waiting(); n > 0 { // admitted, but waiting for a shared limit or a host: not calling
		counts = append(counts, fmt.Sprintf("waiting for %s %d", what, by[engine.WorkerWaiting]))
	}
	counts = append(counts, fmt.Sprintf("pacing %d", by[engine.WorkerPacing]),
		fmt.Sprintf("rate-wait %d", by[engine.WorkerRateWait]), fmt.Sprintf("idle %d", by[engine.WorkerIdle]),
		fmt.Sprintf("held %d", by[engine.WorkerHeld]), fmt.Sprintf("backoff %d", s.BackingOff), "binding: "+m.binding())
	right = append(right, pack(counts, " ", rightW)...)
	if m.conns >= 0 {
		right = append(right, pack(strings.Fields(fmt.Sprintf("connections %d open · one per worker", m.conns)), " ", rightW)...)
	}
	if stacked {
		for _, r := range right {
			left = append(left, " "+r)
		}
		right = nil
	}
	for len(left) < len(right) {
		left = append(left, "")
	}
	for len(right) < len(left) {
		right = append(right, "")
	}
	title := fmt.Sprintf("workers %d in flight / %d", s.InFlight, set.Parallelism)
	if p, eff := probes.EffectiveParallelism(set, s.Effective); eff {
		title = fmt.Sprintf("workers %d in flight / %d effective", s.InFlight, p)
	}
	rule := fmt.Sprintf("knobs · retries %d", m.opt.Retries)
	if m.replaying() {
		rule = fmt.Sprintf("knobs as recorded · retries %d", m.opt.Retries)
	}
	if ansi.StringWidth("─ "+rule+"  "+title+" ─")+1 > w {
		rule = fmt.Sprintf("knobs · retries %d", m.opt.Retries) // "as recorded" goes before a figure is cut
	}
	out := []string{m.rule(rule, title, w)}
	for i := range left {
		if stacked {
			out = append(out, fit(left[i], w))
			continue
		}
		out = append(out, fit(fit(left[i], leftW)+" "+right[i], w))
	}
	return out
}

// minWorkersW is the narrowest the worker column beside the knobs may be: its counts by state
// ("calling 16 pacing 3 rate-wait 2 idle 3") on one line.
const minWorkersW = 39

// knobRows is the knob panel's height for a width: as many lines as it draws.
func (m Model) knobRows(w int) int { return len(m.knobs(w)) }

// workerStrip draws one symbol per worker, grouped by state so the proportions read at a
// glance, in lines of at most w cells. On a screen of 160x48 or more it is a grid of rows of 32
// (wider rows when 4 rows would not hold them all); elsewhere one line. Workers that do not fit
// are drawn in proportion of their states as far as the cells go and counted at the end
// ("+32"), so that the strip never hides that some are missing.
func (m Model) workerStrip(w int) []string {
	s := m.snap
	w = max(w, 8)
	order := []engine.WorkerState{engine.WorkerCalling, engine.WorkerWaiting, engine.WorkerPacing, engine.WorkerRateWait, engine.WorkerHeld, engine.WorkerIdle, engine.WorkerOff}
	n := 0
	for _, st := range order {
		n += s.ByState[st]
	}
	rows, cw := 1, w
	if m.width >= 160 && m.height >= 48 {
		rows = 4
		cw = min(w, max(gridRow, (n+rows-1)/rows))
	}
	shown, more := n, ""
	if n > rows*cw {
		more = fmt.Sprintf(" +%d", n) // as wide as any count of the hidden can be
		shown = max(rows*cw-ansi.StringWidth(more), 0)
		more = fmt.Sprintf(" +%d", n-shown)
	}
	// Largest remainder: each state gets its share of the cells shown, rounded so they add up.
	cells := make([]int, len(order))
	rem := make([]int, len(order))
	given := 0
	for i, st := range order {
		cells[i] = s.ByState[st] * shown / max(n, 1)
		rem[i] = s.ByState[st] * shown % max(n, 1)
		given += cells[i]
	}
	for ; given < shown; given++ {
		best := 0
		for i := range order {
			if rem[i] > rem[best] {
				best = i
			}
		}
		cells[best]++
		rem[best] = -1
	}
	var all []string
	for i, st := range order {
		for range cells[i] {
			all = append(all, m.styles.Workers[st].Render(workerSymbols[st]))
		}
	}
	var out []string
	for from := 0; from < len(all) || len(out) == 0; from += cw {
		out = append(out, strings.Join(all[from:min(from+cw, len(all))], ""))
	}
	out[len(out)-1] += more
	return out
}

// gridRow is the width of a row of the worker grid: rows of 32 are easy to count.
const gridRow = 32

// binding names the limit that holds throughput: by Little's law over the advisor's last
// window when it has one, else from what the workers are doing this instant.
func (m Model) binding() string {
	if m.shared != "" { // a shared limit of other jobs holds this one back
		return m.shared
	}
	if b := m.advice.Binding; b != "" && b != probes.BindNone {
		return string(b)
	}
	return instantBinding(m.snap)
}

// instantBinding reads the workers' states: who waits for what. An effective value that
// binds is the target's doing: "server", as the advisor says.
func instantBinding(s engine.Snapshot) string {
	by := s.ByState
	_, rateEff := probes.EffectiveRate(s.Settings, s.Effective)
	par, parEff := probes.EffectiveParallelism(s.Settings, s.Effective)
	switch {
	case s.State == engine.Paused:
		return "paused"
	case s.HoldUntil.After(s.At):
		return "Retry-After"
	case by[engine.WorkerWaiting] > 0 && by[engine.WorkerWaiting] >= by[engine.WorkerIdle]:
		what, _ := s.Waiting() // a shared limit or a host's turn
		return what
	case by[engine.WorkerRateWait] > 0 && rateEff:
		return "server"
	case by[engine.WorkerRateWait] > 0:
		return "rate"
	case by[engine.WorkerPacing] > 0 && by[engine.WorkerPacing] >= by[engine.WorkerIdle]:
		return "pacing"
	case s.InFlight >= par && parEff:
		return "server"
	case s.InFlight >= par:
		return "parallelism"
	default:
		return "none (workers idle)"
	}
}

// charts draws four trend charts in a 2×2 grid over the chosen window: calls/s with the rate
// cap, p95 latency, 429/s and errors/s. Titles carry the current value; the charts the trend.
func (m Model) charts(w, rows int) []string {
	span := chartWindows[m.window]
	pts := tail(m.points, int(span/time.Second))
	// A run younger than the window is drawn over its own life, not squeezed to the right.
	for len(pts) > 10 && !m.snap.Started.IsZero() && pts[0].At.Before(m.snap.Started.Truncate(time.Second)) {
		pts = pts[1:]
	}
	calls, p95, tm, errs := make([]float64, len(pts)), make([]float64, len(pts)), make([]float64, len(pts)), make([]float64, len(pts))
	for i, p := range pts {
		calls[i] = float64(p.Calls)
		p95[i] = float64(p.P95.Microseconds()) / 1000
		tm[i] = float64(p.TooMany)
		errs[i] = float64(p.Errors)
	}
	// The cap line is the cap in force: the effective rate while it binds.
	capRate, capEff := probes.EffectiveRate(m.snap.Settings, m.snap.Effective)
	var capLine []float64
	if capRate > 0 {
		capLine = make([]float64, len(pts))
		for i := range capLine {
			capLine[i] = capRate
		}
	}
	leftW := (w - 1) / 2
	rightW := w - leftW - 1
	lat := m.latency
	win := human.Span(span)
	// Each title says its figure's window, which is not the chart's: the figure is now, the
	// chart the trend.
	f := m.fig
	now, short := f.Window(), strings.TrimPrefix(f.Window(), "last ")
	cps := "–"
	if f.Measured() {
		cps = fmt.Sprintf("%.0f", f.CallsPerSecond())
	}
	capLong, capShort := "", ""
	switch {
	case capEff:
		capLong, capShort = " · effective cap "+engine.FormatComputedRate(capRate), " · cap "+engine.FormatComputedRate(capRate)
	case capRate > 0:
		capLong = " · cap " + engine.FormatRate(capRate)
		capShort = capLong
	}
	callsTitle := firstFit(leftW-1, "calls/s "+cps+" ("+now+")"+capLong+" · "+win+" chart",
		"calls/s "+cps+" ("+now+")"+capShort+" · "+win+" chart", "calls/s "+cps+" ("+now+")"+capShort+" · "+win,
		"calls/s "+cps+" ("+short+")"+capShort+" · "+win, "calls/s "+cps+" ("+now+") · "+win)
	latWin, latShort := "last "+human.Span(probes.DefaultWindow), human.Span(probes.DefaultWindow)
	if m.latWhole { // the final screen: the summary's latency
		latWin, latShort = "whole run", "whole run"
	}
	latTitle := firstFit(rightW-1, fmt.Sprintf("p95 %s (p50 %s · p99 %s) · %s · ms", ms(lat.P95), ms(lat.P50), ms(lat.P99), latWin),
		fmt.Sprintf("p95 %s p50 %s p99 %s · %s", ms(lat.P95), ms(lat.P50), ms(lat.P99), latWin),
		fmt.Sprintf("p95 %s p50 %s p99 %s (%s)", ms(lat.P95), ms(lat.P50), ms(lat.P99), latShort),
		fmt.Sprintf("p95 %s p50 %s (%s)", ms(lat.P95), ms(lat.P50), latShort),
		fmt.Sprintf("p95 %s p50 %s", ms(lat.P95), ms(lat.P50)),
		fmt.Sprintf("p95 %s (%s)", ms(lat.P95), latShort))
	perSecond := func(name string, v float64, w int) string {
		now, short := f.HealthWindow(), strings.TrimPrefix(f.HealthWindow(), "last ")
		return firstFit(w-1, fmt.Sprintf("%s %.1f (%s) · %s chart", name, v, now, win), fmt.Sprintf("%s %.1f (%s) · %s", name, v, now, win),
			fmt.Sprintf("%s %.1f (%s) · %s", name, v, short, win))
	}
	var out []string
	gridRows := 2
	if rows < 8 {
		gridRows = 1
	}
	h := rows/gridRows - 1
	st := m.styles
	// A title too wide for its chart takes its shorter form, never a cut one.
	top := sideBySide(
		chart(callsTitle, calls, capLine, leftW, h, false, st.ChartLine, st),
		chart(latTitle, p95, nil, rightW, h, false, st.ChartLine, st),
		leftW, rightW)
	out = append(out, top...)
	if gridRows == 2 {
		bottom := sideBySide(
			chart(perSecond("429/s", f.TooManyPerSecond(), leftW), tm, nil, leftW, h, true, st.ChartBad, st),
			chart(perSecond("errors/s", f.ErrorsPerSecond(), rightW), errs, nil, rightW, h, true, st.ChartBad, st),
			leftW, rightW)
		out = append(out, bottom...)
	}
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out
}

func tail(p []probes.Point, n int) []probes.Point {
	if len(p) > n {
		return p[len(p)-n:]
	}
	return p
}

// errorPanel lists failures grouped by message, newest kinds first.
func (m Model) errorPanel(w, rows int) []string {
	title := "errors"
	if !m.hosts.empty() {
		title = "hosts · errors"
	}
	// The title's counts are the whole run's, said so; the lines below group the failures
	// other than 429s, so that an empty list under a count of 429s says why it is empty.
	counts := fmt.Sprintf("whole run %s × 429 · %s errors", human.Count(m.snap.TooMany), human.Count(m.snap.Errors))
	out := []string{m.rule(title, counts, w)}
	out = append(out, m.hostLines(w)...) // first: with per-host limits, which site holds the run back
	out = append(out, m.errorLines(w)...)
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out[:rows]
}

// errorLines are the errors panel's lines under its hosts: the engine's warnings, then the
// failures grouped by message; a message too long for a line goes on at a space, not cut.
func (m Model) errorLines(w int) []string {
	var out []string
	for _, warning := range m.snap.Warnings { // e.g. too few open files for the parallelism
		out = append(out, wrapText("warning: "+warning, w, m.styles.Warn.Render)...)
	}
	if len(m.errs) == 0 && len(m.snap.Warnings) == 0 {
		none := " none"
		if m.snap.TooMany > 0 {
			none = " no errors besides the 429s (see 429/s)"
		}
		out = append(out, fit(m.styles.Dim.Render(none), w))
	}
	var items []string
	for _, g := range m.errs {
		items = append(items, fmt.Sprintf("%s × %s", human.Count(g.Count), g.Message))
	}
	if len(items) > 0 {
		for _, l := range pack(items, "   ", w-1) {
			out = append(out, fit(" "+l, w))
		}
	}
	return out
}

// hostLines are the hosts panel's lines: the job, then a host at a time, each whole, on as
// many lines as they need; none without per-host limits.
func (m Model) hostLines(w int) []string {
	if m.hosts.empty() {
		return nil
	}
	var out []string
	for _, l := range pack(strings.Split(hostLoads(m.hosts), "   "), "   ", w-1) {
		out = append(out, fit(" "+l, w))
	}
	return out
}

// quotaText is the target's latest word on the caller's quota: "quota 12/100 · resets in 30s",
// or "" when it never said.
func quotaText(s engine.Snapshot) string {
	q := s.Quota
	if q.At.IsZero() {
		return ""
	}
	t := "quota " + human.Count(q.Remaining)
	if q.Limit >= 0 {
		t += "/" + human.Count(q.Limit)
	}
	if left := q.ResetAt.Sub(s.At); q.Reset > 0 && left > 0 {
		t += " · resets in " + human.Span(left)
	}
	return t
}

// advisorLines is the advisor's suggestion with its reason and the key to accept it, or, under
// --auto, the tuner's last change; on the final screen, the summary. The words wrap onto a
// second and third line rather than be cut.
func (m Model) advisorLines(w int) []string {
	s := m.snap
	if !s.Ended.IsZero() && m.lost() {
		return wrapText("the job went away before its end could be seen: numbers as last seen", w, m.styles.Warn.Render)
	}
	if !s.Ended.IsZero() {
		return wrapText(m.summary(), w, nil)
	}
	if m.opt.Auto {
		for i := len(s.Changes) - 1; i >= 0; i-- {
			if c := s.Changes[i]; c.Origin == "auto" && s.At.Sub(c.At) < 30*time.Second {
				return wrapText("auto: "+c.What()+" ("+human.Clock(c.At.Sub(s.Started))+")", w, nil)
			}
		}
	}
	if q := s.Quota; !q.At.IsZero() && q.Remaining == 0 && q.ResetAt.After(s.At) {
		// Nothing to tune while the target's quota is spent: say why calls wait.
		return wrapText(fmt.Sprintf("the target's quota is spent: calls wait %s for its reset; a lower rate spreads the quota",
			human.Span(q.ResetAt.Sub(s.At))), w, m.styles.Warn.Render)
	}
	lines := wrapText(m.advice.Reason, w, nil)
	if m.advice.Action != probes.Hold && !m.opt.Auto && !m.replaying() {
		accept := "  " + m.styles.Key.Render("a") + " accept"
		last := strings.TrimRight(lines[len(lines)-1], " ")
		if ansi.StringWidth(last+accept) <= w {
			lines[len(lines)-1] = fit(last+accept, w)
		} else {
			lines = append(lines, fit(accept, w))
		}
	}
	return lines[:min(len(lines), 3)]
}

// wrapText breaks text at spaces into lines of w cells, each led by a space; style, when set,
// is applied line by line.
func wrapText(text string, w int, style func(...string) string) []string {
	var out []string
	for _, l := range pack(strings.Fields(text), " ", w-1) {
		if style != nil {
			l = style(l)
		}
		out = append(out, fit(" "+l, w))
	}
	return out
}

// pack lays items out on lines of at most w cells, sep between two items of a line: a line
// breaks between items, never inside one, except an item wider than any line, which breaks
// between its words.
func pack(items []string, sep string, w int) []string {
	var out []string
	line := ""
	for _, it := range items {
		if ansi.StringWidth(it) > w && strings.Contains(it, " ") { // too wide for any line: its words go on
			words := pack(strings.Split(it, " "), " ", w)
			if line != "" {
				out = append(out, line)
			}
			out = append(out, words[:len(words)-1]...)
			line = words[len(words)-1]
			continue
		}
		switch {
		case line == "":
			line = it
		case ansi.StringWidth(line)+ansi.StringWidth(sep)+ansi.StringWidth(it) <= w:
			line += sep + it
		default:
			out = append(out, line)
			line = it
		}
	}
	return append(out, line)
}

// firstFit is the first of the variants, longest first, that fits w cells, else the last.
func firstFit(w int, variants ...string) string {
	for _, v := range variants {
		if ansi.StringWidth(v) <= w {
			return v
		}
	}
	return variants[len(variants)-1]
}

func (m Model) summary() string {
	// The summary Run returned is the final snapshot's (engine.Snapshot.Summary): the same
	// numbers as the summary printed after the screen, in the same words; how and when the
	// run ended is the panel's title.
	sum := m.snap.Summary()
	left := ""
	if n := sum.NotRun(); n > 0 {
		left = fmt.Sprintf(" · %s not run", human.Count(n))
	}
	return fmt.Sprintf("%s ok, %s failed%s · %s calls, %s × 429", human.Count(sum.OK), human.Count(sum.Failed), left,
		human.Count(sum.Calls), human.Count(sum.TooMany))
}

// changePanel is the change log, newest first, with the time into the run.
func (m Model) changePanel(w, rows int) []string {
	out := []string{m.rule("changes", "", w)}
	ch := m.snap.Changes
	for i := len(ch) - 1; i >= 0 && len(out) < rows; i-- {
		c := ch[i]
		at := human.Clock(c.At.Sub(m.snap.Started))
		what := c.What() // "rate 50/s → 100/s, burst 1 → 5"
		if c.From == "" {
			what = c.Knob + " " + c.To
		}
		head := fmt.Sprintf(" %7s  %-6s ", at, c.Origin)
		for i, l := range pack(strings.Fields(what), " ", w-ansi.StringWidth(head)) {
			if i > 0 {
				head = strings.Repeat(" ", ansi.StringWidth(head))
			}
			if len(out) < rows {
				out = append(out, fit(head+l, w))
			}
		}
	}
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out
}

// keyLine is always there: the keys, or the prompt, confirmation or message of the moment.
func (m Model) keyLine(w int) string {
	st := m.styles
	switch {
	case m.commanding:
		in := m.input
		room := max(w-ansi.StringWidth(in.Prompt)-1, 1)
		if ansi.StringWidth(in.Placeholder) > room { // fewer examples rather than cut ones
			in.Placeholder = firstFit(room, "parallelism 64 · rate 200/s · window 5m", "parallelism 64 · rate 200/s", "parallelism 64")
		}
		in.SetWidth(room) // the input scrolls within the line; its placeholder shows whole
		return fit(in.View(), w)
	case m.confirm == "quit":
		return fit(st.Warn.Render(firstFit(w,
			fmt.Sprintf(" %s in flight: q or y drains and quits · any other key cancels", human.Counted(int64(m.snap.InFlight), "call", "calls")),
			fmt.Sprintf(" %d in flight: q or y drains and quits · other keys cancel", m.snap.InFlight),
			fmt.Sprintf(" %d in flight: q/y drains, quits · other: cancel", m.snap.InFlight))), w)
	case m.confirm == "drain":
		return fit(st.Warn.Render(firstFit(w,
			" drain: no new calls, the run ends after those in flight · d or y confirms",
			" drain: no new calls, then the run ends · d or y confirms",
			" drain: no new calls, then end · d/y confirms")), w)
	case m.flash != "" && m.opt.Now().Before(m.flashUntil):
		return fit(" "+st.Accent.Render(shorten(m.flash, w-1)), w)
	case m.replaying():
		return m.replayKeyLine(w)
	case !m.snap.Ended.IsZero():
		return fit(" press any key to exit", w)
	}
	k := st.Key.Render
	quit := "quit"
	if m.opt.Attached {
		quit = "detach"
	}
	// ↑↓ and + - turn the parallelism's and the rate's ceilings (the knob lines show which
	// is which); under them the engine keeps its effective values.
	return keyHints(w, []keyHint{
		{k("↑↓") + " " + k("+ -") + " ceilings", 0}, {k("[ ]") + " pace", 2}, {k("p") + " pause", 0}, {k("d") + " drain", 3},
		{k(":") + " set", 4}, {k("?") + " help", 0}, {k("q") + " " + quit, 0}, {k("w") + " chart window", 5},
	})
}

// shorten fits a message to w cells by dropping its least part first: a closing
// parenthesis, then what follows a semicolon, then what follows a comma; only then is it cut.
func shorten(msg string, w int) string {
	for ansi.StringWidth(msg) > w {
		i := strings.LastIndex(msg, " (")
		if i < 0 || !strings.HasSuffix(msg, ")") {
			i = strings.LastIndexAny(msg, ";,")
		}
		if i <= 0 {
			break
		}
		msg = msg[:i]
	}
	return msg
}

// keyHint is a key and its word in the key line; drop is its turn to give way when the line is
// too narrow (0: never: the help, quit and the knobs' keys always show).
type keyHint struct {
	text string
	drop int
}

// keyHints is the key line: the hints that fit, the least needed dropped first (all are in
// the help) rather than a hint cut.
func keyHints(w int, hints []keyHint) string {
	for drop := 99; ; drop-- {
		var kept []string
		for _, h := range hints {
			if h.drop == 0 || h.drop < drop {
				kept = append(kept, h.text)
			}
		}
		line := " " + strings.Join(kept, "  ")
		if ansi.StringWidth(line) <= w || drop <= 1 {
			return fit(line, w)
		}
	}
}

func (m Model) helpScreen(w, rows int) []string {
	return m.helpPanel("help", m.keys.helpRows(), m.keys.compactRows(), [][2]string{
		{":", "e.g. parallelism 64 · pace 250ms · rate 200/s · burst 5 · window 5m"},
		{"ceilings:", "under them throttle keeps an effective rate and parallelism"},
		{"workers:", "■ calling  ▪ pacing  · rate-wait  ◇ held  ○ idle  × above the limit"},
	}, w, rows)
}

// helpPanel is a help screen: a key a row, then the notes, each description wrapped under
// itself rather than cut. When one key a row leaves no room for the notes, the compact rows
// (a key and its opposite on one line) stand in; only what still does not fit is cut.
func (m Model) helpPanel(title string, keys, compact, notes [][2]string, w, rows int) []string {
	lines := func(rs [][2]string) []string {
		var out []string
		for _, r := range rs {
			sep := " " // the legend's items ("■ calling") stay whole; other text breaks at words
			if strings.Contains(r[1], "  ") {
				sep = "  "
			}
			for i, l := range pack(strings.Split(r[1], sep), sep, w-13) {
				k := r[0]
				if i > 0 {
					k = ""
				}
				out = append(out, fit(fmt.Sprintf("  %-10s %s", k, l), w))
			}
		}
		return out
	}
	body := append(lines(keys), lines(notes)...)
	if 1+len(body) > rows {
		body = append(lines(compact), lines(notes)...)
	}
	out := append([]string{m.rule(title, "any key closes", w)}, body...)
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out[:rows]
}

// rule is a section line: "─ title ───── right ──".
func (m Model) rule(title, right string, w int) string {
	st := m.styles
	left := st.Rule.Render("─ ") + st.Accent.Render(title) + " "
	r := ""
	if right != "" {
		r = " " + right + " " + st.Rule.Render("─")
	}
	fill := w - ansi.StringWidth(left) - ansi.StringWidth(r)
	if fill < 1 {
		return fit(left+r, w)
	}
	return left + st.Rule.Render(strings.Repeat("─", fill)) + r
}

// fit truncates s to w cells (ANSI-aware) and pads it with spaces to exactly w.
func fit(s string, w int) string {
	if ansi.StringWidth(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	if pad := w - ansi.StringWidth(s); pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	return s
}

// spread puts left and right on one line of width w.
func spread(left, right string, w int) string {
	gap := w - ansi.StringWidth(left) - ansi.StringWidth(right) - 1
	if gap < 1 {
		return fit(left+" "+right, w)
	}
	return left + strings.Repeat(" ", gap) + right + " "
}

func sideBySide(a, b []string, wa, wb int) []string {
	n := max(len(a), len(b))
	out := make([]string, n)
	for i := range n {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		out[i] = fit(x, wa) + " " + fit(y, wb)
	}
	return out
}

// bar is a progress bar of w cells with eighth-cell resolution.
func bar(frac float64, w int) string {
	frac = min(max(frac, 0), 1)
	eighths := int(frac * float64(w) * 8)
	full, part := eighths/8, eighths%8
	s := strings.Repeat("█", full)
	if part > 0 && full < w {
		s += string([]rune(" ▏▎▍▌▋▊▉")[part])
		full++
	}
	return s + strings.Repeat(" ", max(w-full, 0))
}

// ms renders a latency, or a dash while there is none to show.
func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return human.Latency(d)
}
