package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// newCompletionCmd prints cobra's completion scripts. It replaces cobra's default completion
// command (disabled in newRoot) to say how to install each script, and to leave out
// PowerShell: throttle runs where flock and Unix signals do.
func newCompletionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script of bash, zsh or fish on stdout. Once installed, the
shell completes throttle's commands, adapters and flags, with a line of help for each.

bash needs the bash-completion package (version 2). zsh needs compinit, which most
setups load; if yours does not, add "autoload -U compinit; compinit" to ~/.zshrc.
Open a new shell after installing.`,
		Example: `  # bash, this shell only
  source <(throttle completion bash)
  # bash, every new shell
  mkdir -p ~/.local/share/bash-completion/completions
  throttle completion bash > ~/.local/share/bash-completion/completions/throttle

  # zsh: into a directory of $fpath, e.g.
  mkdir -p ~/.zfunc && throttle completion zsh > ~/.zfunc/_throttle
  # and in ~/.zshrc, before compinit:  fpath=(~/.zfunc $fpath)

  # fish
  throttle completion fish > ~/.config/fish/completions/throttle.fish`,
		ValidArgs:             []string{"bash", "zsh", "fish"},
		Args:                  cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return genCompletion(cmd.Root(), args[0], env.Stdout)
		},
	}
}

// genCompletion writes the completion script of shell for root to w, with descriptions.
func genCompletion(root *cobra.Command, shell string, w io.Writer) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	}
	return usageError("completion: unknown shell %q: want bash, zsh or fish", shell)
}

// CommandTree returns throttle's commands as [Main] builds them, to run nothing: for the man
// page generator (cmd/gen-man), so that the pages are made from the definitions that --help
// prints and cannot drift from them.
func CommandTree() *cobra.Command {
	env := Env{
		Stdout: io.Discard, Stderr: io.Discard,
		LookupEnv: func(string) (string, bool) { return "", false },
	}
	return newRoot(&env)
}
