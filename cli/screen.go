package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"golang.org/x/sys/unix"

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
func runScreen(ctx context.Context, env *Env, e *engine.Engine, mon *probes.Monitor, title string, rf *runFlags, j job) (engine.Summary, error) {
	var ctrl engine.Controls = e
	if j.controls != nil {
		ctrl = j.controls
	}
	m := tui.New(ctrl, mon, tui.Options{Title: title, Retries: rf.retries, FPS: rf.fps, Plain: noColor(env), Auto: rf.auto,
		Hosts: j.hosts, Connections: j.connections, Binding: j.binding})
	p := tea.NewProgram(m, tea.WithoutSignalHandler(), tea.WithFPS(rf.fps), tea.WithOutput(env.Stdout))
	shown := make(chan error, 1)
	go func() {
		_, err := p.Run()
		shown <- err
	}()

	// When the terminal goes away (SIGHUP, or a dead terminal seen by watchTerminal) the
	// screen goes and the job goes on headless, its progress lines in a log next to the
	// results, ready to be attached again.
	var rep *headless
	var mu sync.Mutex
	var once sync.Once
	hungUp, ended := false, false
	hangup := func(why string) {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			hungUp = true
			p.Kill()
			if ended {
				return // the final screen on a dead terminal: nothing left to report
			}
			f, err := os.OpenFile(rf.out+".log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return
			}
			rep = startHeadless(f, e, mon, title, rf.progressEvery, j)
			rep.say(why + ": the terminal went away; the job goes on (throttle attach to watch it)")
		})
	}
	sig := handleSignals(env, e, func(string) {}, func() { hangup("SIGHUP") })
	stopWatch := watchTerminal(env.Stdout, func() { hangup("terminal closed") })
	defer stopWatch()
	sum, runErr := e.Run(ctx)
	sig.stop()
	mu.Lock()
	ended = true
	if rep != nil {
		rep.stop()
		rep.summary(sum, mon.Overall(), rf.out)
	}
	mu.Unlock()

	if sig.received.Load() {
		// Nobody may be at the keyboard (SIGTERM from a supervisor): close the screen.
		go p.Quit()
		select {
		case err := <-shown:
			_ = err // the screen is being closed on a signal: its end, not its error, is awaited
		case <-time.After(2 * time.Second):
			p.Kill()
			err := <-shown
			_ = err // killed: its error is the kill
		}
	} else if err := <-shown; err != nil && !wasHungUp(&mu, &hungUp) {
		fmt.Fprintf(env.Stderr, "throttle: the screen failed: %v\n", err)
	}
	return sum, runErr
}

func wasHungUp(mu *sync.Mutex, b *bool) bool {
	mu.Lock()
	defer mu.Unlock()
	return *b
}

// watchTerminal calls gone once the terminal on w is hung up (its pty closed) even if no
// SIGHUP came, e.g. when the session leader outlived it: reads of it then give EOF, which
// Bubble Tea takes as the end of input, and the screen would wait for ever for a key.
func watchTerminal(w io.Writer, gone func()) (stop func()) {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); errors.Is(err, unix.EIO) {
					gone()
					return
				}
			}
		}
	}()
	return sync.OnceFunc(func() { close(done) })
}
