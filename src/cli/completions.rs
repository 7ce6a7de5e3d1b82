//! `coedit completions SHELL`: shell completion scripts generated from the clap
//! definition; the copies in `completions/` are checked against it by a test.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::output::write_stdout;
use super::{Cli, Failure};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

impl CompletionsArgs {
    pub fn run(self) -> Result<(), Failure> {
        write_stdout(&script(self.shell))
    }
}

/// The completion script for `shell`, as `coedit completions SHELL` prints it.
pub fn script(shell: Shell) -> String {
    let mut buffer = Vec::new();
    // Generated into memory first: clap_complete panics when its writer fails, and a
    // closed stdout must not be a panic.
    clap_complete::generate(shell, &mut Cli::command(), "coedit", &mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}
