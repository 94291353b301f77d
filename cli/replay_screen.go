package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	tea "charm.land/bubbletea/v2"

	"github.com/throttle-dev/throttle/record"
	"github.com/throttle-dev/throttle/replay"
	"github.com/throttle-dev/throttle/tui"
)

// The player is the replay screen's engine, statistics and replay controls at once.
var (
	_ tui.Engine = (*replay.Player)(nil)
	_ tui.Stats  = (*replay.Player)(nil)
	_ tui.Replay = (*replay.Player)(nil)
)

// replayScreen plays a recording on the screen of a live run, starting at speed. Nothing runs
// behind it, so every way out is immediate: q or ctrl+c on the screen (exit 0), a SIGINT,
// SIGTERM or SIGHUP (exit 130, as an interrupted command), ctx's end, or a terminal that
// went away.
func replayScreen(ctx context.Context, env *Env, rec *record.Recording, path string, speed float64, fps int) error {
	p := replay.NewPlayer(rec, nil)
	p.SetSpeed(speed)
	h := rec.Header
	title := filepath.Base(path) + " · " + h.Adapter
	if h.Input != "" {
		title += " · " + h.Input
	}
	m := tui.New(p, p, tui.Options{Title: title, Retries: h.Retries, FPS: fps, Plain: noColor(env), Auto: h.Auto, Replay: p})
	prog := tea.NewProgram(m, tea.WithoutSignalHandler(), tea.WithFPS(fps), tea.WithOutput(env.Stdout))

	stop := make(chan struct{})
	defer close(stop)
	signalled := make(chan struct{})
	go func() {
		select {
		case sig := <-env.Signals:
			close(signalled)
			if sig == syscall.SIGHUP { // no terminal left to restore
				prog.Kill()
				return
			}
			prog.Quit()
		case <-ctx.Done():
			prog.Quit()
		case <-stop:
		}
	}()
	stopWatch := watchTerminal(env.Stdout, prog.Kill)
	defer stopWatch()

	_, err := prog.Run()
	select {
	case <-signalled:
		return exitCode(ExitInterrupted)
	default:
	}
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("the replay screen failed: %w", err)
	}
	return nil
}
