package tui

import (
	"fmt"
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
	v.WindowTitle = "throttle · " + m.opt.Title
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

func planLayout(n, width, knobRows int) layout {
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
	if take(2) {
		l.advisor = 2
	}
	switch {
	case take(8):
		l.charts = 8
	case take(4):
		l.charts = 4
	}
	if take(2) {
		l.errors = 2
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
	l := planLayout(n, w, m.knobRows(w))
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
		if m.opt.Auto {
			title = "advisor · auto on"
		}
		out = append(out, m.rule(title, "", w), m.advisorLine(w))
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
	total := "unknown total"
	if s.Total >= 0 {
		total = human.Count(s.Total) + " items"
	}
	left := st.Title.Render(" throttle ") + " " + m.opt.Title + " · " + total
	right := m.stateWord() + "  " + human.Clock(elapsed)
	if eta, ok := s.ETA(); ok {
		right += "  ETA " + human.Clock(eta)
	}
	if m.replaying() { // the position is the elapsed time, and an ETA of the past is noise
		right = m.stateWord() + "  " + m.replayLabel()
	}
	// The state, elapsed time and ETA matter more than the title: shorten the title first.
	if room := w - ansi.StringWidth(right) - 2; ansi.StringWidth(left) > room {
		left = ansi.Truncate(left, max(room, 10), "…")
	}
	line1 := spread(left, right, w)

	done := s.Done()
	frac := 0.0
	if s.Total > 0 {
		frac = float64(done) / float64(s.Total)
	}
	tail := fmt.Sprintf(" %5.1f%%  %s / %s", 100*frac, human.Count(done), human.Count(s.Total))
	if s.Total < 0 {
		tail = fmt.Sprintf("  %s done", human.Count(done))
		frac = 0
	}
	barW := max(w-ansi.StringWidth(tail)-1, 4)
	line2 := " " + st.Bar.Render(bar(frac, barW-1)) + tail

	// The cap in force: the effective rate while it binds under the ceiling, said so when
	// the line has room (the knobs below say it in any case).
	cps := m.callsPerSecond(5)
	rate, short := fmt.Sprintf("%.0f calls/s", cps), ""
	switch r, eff := probes.EffectiveRate(s.Settings, s.Effective); {
	case eff:
		rate, short = rate+" of "+engine.FormatComputedRate(r)+" effective cap", rate+" of "+engine.FormatComputedRate(r)+" cap"
	case r > 0:
		rate += " of " + engine.FormatRate(r) + " cap"
	}
	counts := fmt.Sprintf("   ok %s   failed %s   retries %s   429s %s",
		human.Count(s.OK), m.health(s.Failed > 0, human.Count(s.Failed)), human.Count(s.Retries), m.tooManyShare())
	if q := quotaText(s); q != "" {
		counts += "   " + m.health(s.Quota.Remaining == 0, q)
	}
	line3 := " " + rate + counts
	if short != "" && ansi.StringWidth(line3) > w {
		line3 = " " + short + counts
	}
	return []string{fit(line1, w), fit(line2, w), fit(line3, w)}
}

func (m Model) stateWord() string {
	s, st := m.snap, m.styles
	switch {
	case !s.Ended.IsZero() && s.State == engine.Done:
		return st.Good.Render("✓ done")
	case !s.Ended.IsZero():
		return st.Warn.Render("■ " + s.State.String() + ", ended")
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

// tooManyShare is the share of 429 answers among the calls of the last 10 seconds.
func (m Model) tooManyShare() string {
	var calls, tm int64
	n := min(10, len(m.points))
	for _, p := range m.points[len(m.points)-n:] {
		calls += p.Calls
		tm += p.TooMany
	}
	if calls == 0 {
		return "0%"
	}
	share := 100 * float64(tm) / float64(calls)
	return m.health(tm > 0, fmt.Sprintf("%.1f%%", share))
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
	right := m.workerGrid(w-leftW-1, m.gridRows(w))
	counts := fmt.Sprintf("calling %d pacing %d rate-wait %d idle %d", by[engine.WorkerCalling], by[engine.WorkerPacing], by[engine.WorkerRateWait], by[engine.WorkerIdle])
	if what, n := s.Waiting(); n > 0 { // admitted, but waiting for a shared limit or a host: not calling
		counts = fmt.Sprintf("calling %d waiting for %s %d", by[engine.WorkerCalling], what, by[engine.WorkerWaiting])
	}
	right = append(right, counts,
		fmt.Sprintf("held %d backoff %d binding: %s", by[engine.WorkerHeld], s.BackingOff, m.binding()))
	if m.conns >= 0 {
		right = append(right, fmt.Sprintf("connections %d open · one per worker", m.conns))
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
	out := []string{m.rule(rule, title, w)}
	for i := range left {
		out = append(out, fit(fit(left[i], leftW)+" "+right[i], w))
	}
	return out
}

// gridRows is how many rows the worker grid may take: one on a small screen, up to three on a
// wide one, so that 256 workers still show one cell each at 160 columns.
func (m Model) gridRows(w int) int {
	if w < 120 || m.height < 40 {
		return 1
	}
	cells := w - 41
	return min(3, max(1, (len(m.snap.Workers)+cells-1)/cells))
}

// knobRows is the knob panel's height for a width.
func (m Model) knobRows(w int) int {
	lines := m.gridRows(w) + 2 // the grid, then the counts by state
	if m.conns >= 0 {
		lines++ // the open connections
	}
	knobs := 3
	if _, eff := probes.EffectiveParallelism(m.snap.Settings, m.snap.Effective); eff {
		knobs++ // the ceiling beside the effective value, the rest of the knob below
	}
	if _, eff := probes.EffectiveRate(m.snap.Settings, m.snap.Effective); eff {
		knobs++
	}
	return 1 + max(knobs, lines)
}

// workerGrid draws one symbol per worker slot, grouped by state so the proportions read at a
// glance, over at most rows lines of w cells; when the slots do not fit, one cell stands for
// several workers.
func (m Model) workerGrid(w, rows int) []string {
	s := m.snap
	w = max(w, 1)
	order := []engine.WorkerState{engine.WorkerCalling, engine.WorkerWaiting, engine.WorkerPacing, engine.WorkerRateWait, engine.WorkerHeld, engine.WorkerIdle, engine.WorkerOff}
	per := max(1, (len(s.Workers)+w*rows-1)/(w*rows))
	var cells []string
	for _, st := range order {
		n := (s.ByState[st] + per - 1) / per
		for range n {
			cells = append(cells, m.styles.Workers[st].Render(workerSymbols[st]))
		}
	}
	out := make([]string, rows)
	for r := range rows {
		from, to := min(r*w, len(cells)), min((r+1)*w, len(cells))
		out[r] = strings.Join(cells[from:to], "")
	}
	return out
}

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
	capTitle := ""
	switch {
	case capEff:
		capTitle = " · cap " + engine.FormatComputedRate(capRate)
		if long := " · effective cap " + engine.FormatComputedRate(capRate); ansi.StringWidth(fmt.Sprintf("calls/s %.0f%s · last %s", m.callsPerSecond(5), long, win)) <= leftW {
			capTitle = long
		}
	case capRate > 0:
		capTitle = " · cap " + engine.FormatRate(capRate)
	}
	var out []string
	gridRows := 2
	if rows < 8 {
		gridRows = 1
	}
	h := rows/gridRows - 1
	st := m.styles
	top := sideBySide(
		chart(fmt.Sprintf("calls/s %.0f%s · last %s", m.callsPerSecond(5), capTitle, win), calls, capLine, leftW, h, false, st.ChartLine, st),
		chart(fmt.Sprintf("p95 %s (p50 %s · p99 %s) · ms", ms(lat.P95), ms(lat.P50), ms(lat.P99)), p95, nil, rightW, h, false, st.ChartLine, st),
		leftW, rightW)
	out = append(out, top...)
	if gridRows == 2 {
		bottom := sideBySide(
			chart(fmt.Sprintf("429/s %.1f · %s", lastRate(tm, 5), win), tm, nil, leftW, h, true, st.ChartBad, st),
			chart(fmt.Sprintf("errors/s %.1f · %s", lastRate(errs, 5), win), errs, nil, rightW, h, true, st.ChartBad, st),
			leftW, rightW)
		out = append(out, bottom...)
	}
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out
}

func lastRate(v []float64, n int) float64 {
	n = min(n, len(v))
	if n == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range v[len(v)-n:] {
		sum += x
	}
	return sum / float64(n)
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
	out := []string{m.rule(title, fmt.Sprintf("%s × 429", human.Count(m.snap.TooMany)), w)}
	if !m.hosts.empty() { // first: with per-host limits, which site holds the run back
		out = append(out, fit(" "+hostLoads(m.hosts), w))
	}
	for _, warning := range m.snap.Warnings { // e.g. too few open files for the parallelism
		out = append(out, fit(m.styles.Warn.Render(" warning: "+warning), w))
	}
	if len(m.errs) == 0 && len(m.snap.Warnings) == 0 {
		out = append(out, fit(m.styles.Dim.Render(" none"), w))
	}
	var line string
	for _, g := range m.errs {
		item := fmt.Sprintf("%s × %s", human.Count(g.Count), g.Message)
		if line != "" && ansi.StringWidth(line)+3+ansi.StringWidth(item) > w-1 {
			out = append(out, fit(" "+line, w))
			line = ""
		}
		if line != "" {
			line += "   "
		}
		line += item
	}
	if line != "" {
		out = append(out, fit(" "+line, w))
	}
	for len(out) < rows {
		out = append(out, strings.Repeat(" ", w))
	}
	return out[:rows]
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

// advisorLine is the advisor's suggestion with its reason and the key to accept it, or, under
// --auto, the tuner's last change; on the final screen, the summary.
func (m Model) advisorLine(w int) string {
	s := m.snap
	if !s.Ended.IsZero() {
		return fit(" "+m.summary(), w)
	}
	if m.opt.Auto {
		for i := len(s.Changes) - 1; i >= 0; i-- {
			if c := s.Changes[i]; c.Origin == "auto" && s.At.Sub(c.At) < 30*time.Second {
				return fit(" auto: "+c.What()+" ("+human.Clock(c.At.Sub(s.Started))+")", w)
			}
		}
	}
	if q := s.Quota; !q.At.IsZero() && q.Remaining == 0 && q.ResetAt.After(s.At) {
		// Nothing to tune while the target's quota is spent: say why calls wait.
		return fit(m.styles.Warn.Render(fmt.Sprintf(" the target's quota is spent: calls wait %s for its reset; a lower rate spreads the quota",
			human.Span(q.ResetAt.Sub(s.At)))), w)
	}
	line := " " + m.advice.Reason
	if m.advice.Action != probes.Hold && !m.opt.Auto && !m.replaying() {
		line += "  " + m.styles.Key.Render("a") + " accept"
	}
	return fit(line, w)
}

func (m Model) summary() string {
	s := m.snap
	verb := "done"
	if s.State != engine.Done {
		verb = s.State.String() + ", ended"
	}
	left := ""
	if s.Total > s.Done() {
		left = fmt.Sprintf(" · %s not run", human.Count(s.Total-s.Done()))
	}
	line := fmt.Sprintf("%s in %s: %s ok, %s failed%s · %s calls, %s × 429",
		verb, human.Clock(s.Ended.Sub(s.Started)), human.Count(s.OK), human.Count(s.Failed), left, human.Count(s.Calls), human.Count(s.TooMany))
	if m.replaying() { // a replay's end is a place to seek back from
		return line
	}
	return line + " — press any key to exit"
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
		out = append(out, fit(fmt.Sprintf(" %7s  %-6s %s", at, c.Origin, what), w))
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
		return fit(m.input.View(), w)
	case m.confirm == "quit":
		return fit(st.Warn.Render(fmt.Sprintf(" %d calls in flight: q or y drains and quits · any other key cancels", m.snap.InFlight)), w)
	case m.confirm == "drain":
		return fit(st.Warn.Render(" drain: no new calls, the run ends after those in flight · d or y confirms"), w)
	case m.flash != "" && m.opt.Now().Before(m.flashUntil):
		return fit(" "+st.Accent.Render(m.flash), w)
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
	line := fmt.Sprintf(" %s %s ceilings  %s pace  %s pause  %s drain  %s set  %s help  %s %s",
		k("↑↓"), k("+ -"), k("[ ]"), k("p"), k("d"), k(":"), k("?"), k("q"), quit)
	if w >= 100 {
		line += fmt.Sprintf("  %s chart window", k("w"))
	}
	return fit(line, w)
}

func (m Model) helpScreen(w, rows int) []string {
	return m.helpPanel("help", m.keys.helpRows(), []string{
		"  :          e.g. parallelism 64 · pace 250ms · rate 200/s · burst 5 · window 5m",
		"  ceilings:  under them throttle keeps an effective rate and parallelism",
		"  workers: ■ calling  ▪ pacing  · rate-wait  ◇ held  ○ idle  × above the limit",
	}, w, rows)
}

// helpPanel is a help screen: a key a row, then lines of notes, cut or padded to rows.
func (m Model) helpPanel(title string, keys [][2]string, notes []string, w, rows int) []string {
	out := []string{m.rule(title, "any key closes", w)}
	for _, r := range keys {
		out = append(out, fit(fmt.Sprintf("  %-10s %s", r[0], r[1]), w))
	}
	for _, n := range notes {
		out = append(out, fit(n, w))
	}
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
