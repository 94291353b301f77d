package cli

import (
	"slices"

	"github.com/spf13/cobra"
)

// adapterCommand makes the command of one adapter ("http", "exec", …) for run and probe: act
// is what to do with the job it builds.
type adapterCommand func(env *Env, act action) *cobra.Command

// registered is one adapter's command and its place in help (lower first).
type registered struct {
	order int
	make  adapterCommand
}

// adapterCommands are the adapters, in the order help lists them. Each adapter's file adds
// its own with registerAdapter, so that adding one touches no other file.
var adapterCommands []registered

// registerAdapter adds an adapter's command; order places it in help (lower first).
func registerAdapter(order int, make adapterCommand) {
	adapterCommands = append(adapterCommands, registered{order, make})
	slices.SortStableFunc(adapterCommands, func(a, b registered) int { return a.order - b.order })
}

// addAdapters adds every adapter's command under parent (run or probe).
func addAdapters(parent *cobra.Command, env *Env, act action) {
	for _, a := range adapterCommands {
		parent.AddCommand(a.make(env, act))
	}
}

func init() {
	registerAdapter(10, newHTTPCmd)
	registerAdapter(90, newSimCmd)
}
