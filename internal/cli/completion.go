package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// bashCompletionShim stands in for the one bash-completion function the
// generated script needs, so completion also works where the
// bash-completion package is not installed.
const bashCompletionShim = `# banger: a stand-in for bash-completion's _get_comp_words_by_ref when it is absent.
if ! declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
_get_comp_words_by_ref() {
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
}
fi
`

func (a *app) completionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: "Print a completion script for your shell. For example:\n" +
			"  banger completion bash | sudo tee /etc/bash_completion.d/banger\n" +
			"  banger completion zsh > \"${fpath[1]}/_banger\"\n" +
			"  banger completion fish > ~/.config/fish/completions/banger.fish",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      exactArgs(1, "one shell: bash, zsh or fish"),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := a.streams.Out
			switch args[0] {
			case "bash":
				if _, err := io.WriteString(out, bashCompletionShim); err != nil {
					return err
				}
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return usagef(cmd, "unknown shell %q; use bash, zsh or fish", args[0])
		},
	}
}
