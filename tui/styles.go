package tui

import (
	"charm.land/lipgloss/v2"
	"github.com/guptarohit/asciigraph"

	"github.com/throttle-dev/throttle/engine"
)

// Styles holds every style the screen uses. Colour carries one meaning everywhere: the accent
// for the job's state, green/yellow/red for health only; state is always also told by a word
// or a symbol, so the screen reads the same with NO_COLOR.
type Styles struct {
	Plain   bool // no colour at all (NO_COLOR, or a terminal without colour)
	Title   lipgloss.Style
	Accent  lipgloss.Style
	Dim     lipgloss.Style
	Good    lipgloss.Style
	Warn    lipgloss.Style
	Bad     lipgloss.Style
	Rule    lipgloss.Style
	Key     lipgloss.Style
	Bar     lipgloss.Style
	Workers [7]lipgloss.Style // by engine.WorkerState

	// Chart colours (asciigraph's own ANSI colours; none when Plain).
	ChartLine asciigraph.AnsiColor
	ChartCap  asciigraph.AnsiColor
	ChartBad  asciigraph.AnsiColor
}

// NewStyles returns the colour styles, or plain ones when plain is true.
func NewStyles(plain bool) Styles {
	s := Styles{Plain: plain}
	base := lipgloss.NewStyle()
	if plain {
		s.Title, s.Accent, s.Dim, s.Good, s.Warn, s.Bad = base.Bold(true), base.Bold(true), base, base, base, base.Bold(true)
		s.Rule, s.Key, s.Bar = base, base.Bold(true), base
		for i := range s.Workers {
			s.Workers[i] = base
		}
		return s
	}
	s.Title = base.Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("62"))
	s.Accent = base.Bold(true).Foreground(lipgloss.Color("12"))
	s.Dim = base.Foreground(lipgloss.Color("8"))
	s.Good = base.Foreground(lipgloss.Color("2"))
	s.Warn = base.Foreground(lipgloss.Color("3"))
	s.Bad = base.Bold(true).Foreground(lipgloss.Color("1"))
	s.Rule = base.Foreground(lipgloss.Color("8"))
	s.Key = base.Bold(true).Foreground(lipgloss.Color("12"))
	s.Bar = base.Foreground(lipgloss.Color("12"))
	s.Workers[engine.WorkerCalling] = base.Foreground(lipgloss.Color("2"))
	s.Workers[engine.WorkerPacing] = base.Foreground(lipgloss.Color("6"))
	s.Workers[engine.WorkerRateWait] = base.Foreground(lipgloss.Color("3"))
	s.Workers[engine.WorkerHeld] = base.Foreground(lipgloss.Color("5"))
	s.Workers[engine.WorkerIdle] = base.Foreground(lipgloss.Color("8"))
	s.Workers[engine.WorkerOff] = base.Foreground(lipgloss.Color("8"))
	s.Workers[engine.WorkerWaiting] = base.Foreground(lipgloss.Color("3"))
	s.ChartLine, s.ChartCap, s.ChartBad = asciigraph.Blue, asciigraph.DarkGray, asciigraph.Red
	return s
}

// workerSymbols tell a worker's state without colour: ■ calling, ▫ waiting for its turn at a
// shared limit or a host, ▪ pacing, · waiting for a rate token, ◇ held (pause or
// Retry-After), ○ idle, × above the limit.
var workerSymbols = [...]string{
	engine.WorkerIdle:     "○",
	engine.WorkerPacing:   "▪",
	engine.WorkerRateWait: "·",
	engine.WorkerHeld:     "◇",
	engine.WorkerCalling:  "■",
	engine.WorkerWaiting:  "▫",
	engine.WorkerOff:      "×",
}
