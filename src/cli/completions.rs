//! `hookgate completions bash|zsh|fish` and `hookgate man`: generated from the same clap
//! definitions the binary parses with (clap_complete, clap_mangen), printed on stdout.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, Failure};

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {}

/// Prints the completion script; e.g. `hookgate completions bash > /etc/bash_completion.d/hookgate`.
pub fn completions(args: CompletionArgs) -> Result<(), Failure> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hookgate", &mut out);
    write_stdout(&out)
}

/// Prints hookgate(1) as roff, with a section per subcommand: `hookgate man | man -l -`.
pub fn man(_: ManArgs) -> Result<(), Failure> {
    let command = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut out).map_err(Failure::runtime)?;
    man.render_name_section(&mut out).map_err(Failure::runtime)?;
    man.render_synopsis_section(&mut out).map_err(Failure::runtime)?;
    man.render_description_section(&mut out).map_err(Failure::runtime)?;
    man.render_options_section(&mut out).map_err(Failure::runtime)?;
    man.render_subcommands_section(&mut out).map_err(Failure::runtime)?;
    // Each subcommand's own options, which the page above only lists by name.
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("hookgate {}", sub.get_name());
        let _ = writeln!(out, ".SH \"{}\"", name.to_uppercase());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}", roff_text(&about.to_string()));
        }
        let mut synopsis = Vec::new();
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(name));
        sub_man.render_synopsis_section(&mut synopsis).map_err(Failure::runtime)?;
        sub_man.render_options_section(&mut synopsis).map_err(Failure::runtime)?;
        // Demote the sub-page's sections to sub-sections of this one.
        out.extend(String::from_utf8_lossy(&synopsis).replace(".SH ", ".SS ").into_bytes());
    }
    man.render_version_section(&mut out).map_err(Failure::runtime)?;
    write_stdout(&out)
}

/// Text as a roff paragraph: a leading dot or quote would be read as a request.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with(['.', '\'']) { format!("\\&{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(Failure::runtime)
}
