package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/adapters"
)

// defaultMaxFile caps a saved body unless --max-file says otherwise. Bodies of this tool's bulk
// downloads (API answers, pages, documents, images) are far smaller; without a cap one answer
// that never ends, or a gzip bomb (10 MB that decode to terabytes), fills the disk before
// --timeout ends it. A larger cap is one flag away, and the run says which cap holds at start.
const defaultMaxFile = "1GiB"

// saveFlags are the http adapter's flags for saving bodies to files (--save-dir).
type saveFlags struct {
	dir     string
	name    string
	maxFile string

	cmd *cobra.Command
	// stop ends the run when the directory becomes unusable (set while the command runs).
	stop context.CancelCauseFunc

	mu      sync.Mutex
	stopErr error // why saving stopped the run
}

// register adds the flags to cmd and wraps its RunE: with --save-dir, the run's context can
// be cancelled by a save error that makes every later save fail (a full disk), and such a run
// ends with exit status 1 and the reason, whatever the engine made of the cancellation.
func (f *saveFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "save-dir", "", "stream each ok response body to its own file in DIR (created 0755 if missing); the row gets file, bytes and sha256 instead of output")
	fs.StringVar(&f.name, "save-name", "", "file name in --save-dir: {item}, {.field}, {sha256} (of the item), {n} (its number in the input, from 1); default: the URL's last path segment or the id when plain, else {sha256}")
	fs.StringVar(&f.maxFile, "max-file", defaultMaxFile, "with --save-dir: the largest body saved (e.g. 20GiB); a larger one fails its item and leaves no file")
	cmd.Long += `

Saving bodies: with --save-dir DIR each ok body is streamed to a file of its own
(never held in memory), written under a temporary name and renamed only once it is
complete, so a file in DIR is always whole. The row records "file" (absolute path),
"bytes" and "sha256" instead of "output"; a failed answer saves nothing.
Names come from --save-name and never leave DIR; two items never write one file (the
second fails, or with the default name takes the item's hash). --resume reruns an
item whose file is gone or changed size. A full disk or another write error fails
that item and stops the run (exit 1). --timeout covers the whole download: raise it
for big files.`
	cmd.Example += `

  # Bulk download, each answer to a file in ./json (50/s × 2.3 s ≈ 115 in flight):
  throttle run http --input urls.txt --url '{item}' --save-dir ./json \
      --rate 50 --parallelism 128`
	f.cmd = cmd
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.dir == "" {
			return run(cmd, args)
		}
		ctx, cancel := context.WithCancelCause(cmd.Context())
		defer cancel(nil)
		cmd.SetContext(ctx)
		f.stop = cancel
		err := run(cmd, args)
		f.mu.Lock()
		stopErr := f.stopErr
		f.mu.Unlock()
		if stopErr != nil {
			return &exitError{code: ExitFailures, err: fmt.Errorf("--save-dir: %w; the run stopped (free the space or fix the directory, then run again with --resume)", stopErr)}
		}
		return err
	}
}

// apply puts the flags into cfg. It refuses --save-name and --max-file without --save-dir,
// saving under probe (which calls the same items over and over), and {n} with
// --only-failed, whose input numbers only the failed rows.
func (f *saveFlags) apply(cfg *adapters.HTTPConfig) error {
	if f.dir == "" {
		if f.name != "" || f.cmd.Flags().Changed("max-file") {
			return usageError("--save-name and --max-file go with --save-dir DIR")
		}
		return nil
	}
	if p := f.cmd.Parent(); p != nil && p.Name() == "probe" {
		return usageError("--save-dir is for throttle run: a probe calls the same items over and over")
	}
	if fl := f.cmd.Flag("only-failed"); fl != nil && fl.Value.String() == "true" && strings.Contains(f.name, "{n}") {
		return usageError("--save-name {n} numbers the items of the original input; with --only-failed they would be renumbered: run the original --input with --resume instead")
	}
	maxFile, err := parseSize(f.maxFile)
	if err != nil || maxFile == 0 {
		return usageError("--max-file %q: want a size such as 100MiB or 2GiB", f.maxFile)
	}
	cfg.SaveDir, cfg.SaveName, cfg.MaxFile = f.dir, f.name, maxFile
	cfg.SaveStopped = f.stopped
	stderr := f.cmd.ErrOrStderr()
	how := "--max-file"
	if !f.cmd.Flags().Changed("max-file") {
		how = "the default; --max-file sets another"
	}
	fmt.Fprintf(stderr, "saving bodies to %s (each at most %s: %s)\n", f.dir, f.maxFile, how)
	cfg.SaveNote = func(msg string) { fmt.Fprintln(stderr, msg) }
	return nil
}

// stopped stops the run for err, the first error that made the save directory unusable.
func (f *saveFlags) stopped(err error) {
	f.mu.Lock()
	if f.stopErr == nil {
		f.stopErr = err
	}
	f.mu.Unlock()
	if f.stop != nil {
		f.stop(err)
	}
}
