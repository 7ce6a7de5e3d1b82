#!/usr/bin/env bash
# Regenerates the shell completion scripts in completions/ from the clap definition.
# Run it after changing any subcommand or option; the test cli::completions_are_up_to_date
# fails until the committed files match. Usage: scripts/update-completions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

coedit() { cargo run --quiet --bin coedit -- "$@"; }
coedit completions bash >completions/coedit.bash
coedit completions zsh >completions/_coedit
coedit completions fish >completions/coedit.fish
coedit completions powershell >completions/_coedit.ps1
coedit completions elvish >completions/coedit.elv
echo "completions/ regenerated"
