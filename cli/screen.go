package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/probes"
	"github.com/throttle-dev/throttle/tui"
)

// wantScreen decides, before Bubble Tea starts, between the TUI and headless progress lines:
// the TUI needs a terminal on stdout that is not TERM=dumb (Bubble Tea would otherwise render
// escape codes into a pipe).
func wantScreen(env *Env, rf *runFlags) bool {
	if rf.headless || !env.StdoutTTY {
		return false
	}
	term, _ := env.LookupEnv("TERM")
	return term != "" && term != "dumb"
}

// noColor follows the NO_COLOR convention: any non-empty value means no colour.
func noColor(env *Env) bool {
	v, _ := env.LookupEnv("NO_COLOR")
	return v != ""
}

// runScreen runs the job under the TUI. Signals stay with the CLI (the program has no signal
// handler): a SIGINT or SIGTERM drains the run, and the screen closes by itself when it ends.
// Otherwise the final screen stays until a key is pressed.
func runScreen(ctx context.Context, env *Env, e *engine.Engine, mon *probes.Monitor, title string, rf *runFlags) (engine.Summary, error) {
	m := tui.New(e, mon, tui.Options{Title: title, Retries: rf.retries, FPS: rf.fps, Plain: noColor(env), Auto: rf.auto})
	p := tea.NewProgram(m, tea.WithoutSignalHandler(), tea.WithFPS(rf.fps), tea.WithOutput(env.Stdout))
	shown := make(chan error, 1)
	go func() {
		_, err := p.Run()
		shown <- err
	}()

	// When the terminal goes away (SIGHUP) the screen goes and the job goes on headless,
	// its progress lines in a log next to the results, ready to be attached again.
	var rep *headless
	var mu sync.Mutex
	hungUp := false
	sig := handleSignals(env, e, func(string) {}, func() {
		mu.Lock()
		hungUp = true
		mu.Unlock()
		p.Kill()
		f, err := os.OpenFile(rf.out+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return
		}
		mu.Lock()
		rep = startHeadless(f, e, mon, title, rf.progressEvery)
		mu.Unlock()
		rep.say("SIGHUP: the terminal went away; the job goes on (throttle attach to watch it)")
	})
	sum, runErr := e.Run(ctx)
	sig.stop()
	mu.Lock()
	if rep != nil {
		rep.stop()
		rep.summary(sum, rf.out)
	}
	mu.Unlock()

	if sig.received.Load() {
		// Nobody may be at the keyboard (SIGTERM from a supervisor): close the screen.
		go p.Quit()
		select {
		case <-shown:
		case <-time.After(2 * time.Second):
			p.Kill()
			<-shown
		}
	} else if err := <-shown; err != nil && !hungUp {
		fmt.Fprintf(env.Stderr, "throttle: the screen failed: %v\n", err)
	}
	return sum, runErr
}
