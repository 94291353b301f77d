package tui

import "charm.land/bubbles/v2/key"

// KeyMap is every key the screen answers to, with its help text.
type KeyMap struct {
	Up, Down, Double, Halve key.Binding
	PaceUp, PaceDown        key.Binding
	RateUp, RateDown        key.Binding
	Pause, Drain, Command   key.Binding
	Window, Help, Quit      key.Binding
	Interrupt               key.Binding
	Accept                  key.Binding
	Confirm                 key.Binding
}

// DefaultKeys returns the key map shown in the help bar and the README.
func DefaultKeys() KeyMap {
	return KeyMap{
		Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "parallelism ceiling +1")),
		Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "parallelism ceiling −1 (from the effective value)")),
		Double:    key.NewBinding(key.WithKeys("pgup", "K"), key.WithHelp("PgUp/K", "parallelism ceiling ×2")),
		Halve:     key.NewBinding(key.WithKeys("pgdown", "J"), key.WithHelp("PgDn/J", "parallelism ceiling ÷2 (from the effective value)")),
		PaceUp:    key.NewBinding(key.WithKeys("]"), key.WithHelp("]", "pace longer")),
		PaceDown:  key.NewBinding(key.WithKeys("["), key.WithHelp("[", "pace shorter")),
		RateUp:    key.NewBinding(key.WithKeys("+", "="), key.WithHelp("+", "rate ceiling +10%")),
		RateDown:  key.NewBinding(key.WithKeys("-", "_"), key.WithHelp("-", "rate ceiling −10% of what the run holds to or the target accepted")),
		Pause:     key.NewBinding(key.WithKeys("p", "space"), key.WithHelp("p", "pause/resume")),
		Drain:     key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "drain")),
		Command:   key.NewBinding(key.WithKeys(":"), key.WithHelp(":", "set a value")),
		Window:    key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "chart window 1m/5m/15m")),
		Help:      key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:      key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		Interrupt: key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "drain and quit; twice: cancel calls")),
		Accept:    key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "accept the advisor's suggestion")),
		Confirm:   key.NewBinding(key.WithKeys("y", "enter"), key.WithHelp("y", "confirm")),
	}
}

// helpRows are the full help's lines, in order.
func (k KeyMap) helpRows() [][2]string {
	var rows [][2]string
	for _, b := range []key.Binding{k.Up, k.Down, k.Double, k.Halve, k.PaceUp, k.PaceDown, k.RateUp, k.RateDown,
		k.Accept, k.Pause, k.Drain, k.Command, k.Window, k.Help, k.Quit, k.Interrupt} {
		rows = append(rows, [2]string{b.Help().Key, b.Help().Desc})
	}
	return rows
}

// compactRows are the help's lines on a screen too short for one key a line: a key and its
// opposite share a line.
func (k KeyMap) compactRows() [][2]string {
	return [][2]string{
		{"↑↓ k j", "parallelism ceiling ±1; ↓ from the effective"},
		{"PgUp PgDn", "parallelism ceiling ×2 ÷2 (also K J)"},
		{"] [", "pace longer / shorter"},
		{"+ -", "rate ceiling ±10%; - from the rate held to"},
		{"a", "accept the advisor's suggestion"},
		{"p d", "pause/resume · drain"},
		{": w", "set a value · chart window 1m/5m/15m"},
		{"q ctrl+c", "quit · drain and quit, twice: cancel calls"},
	}
}
