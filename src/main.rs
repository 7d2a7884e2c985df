use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Parser;
use vgg::Error;
mod cli;

use cli::{Cli, Outcome, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            eprintln!("{}", clap_message(&err.render().to_string()));
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    let mut stdout = std::io::stdout().lock();
    match run(&cli, &mut stdout) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::PartialFailure) => ExitCode::from(1),
        // A closed pipe (`vgg summary … | head`) is not an error worth reporting.
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", vgg::error::one_line(&err.to_string()));
            ExitCode::from(2)
        }
    }
}

/// clap's error as one line: the error and its tips, without the usage block (`--help`
/// has it), e.g. `error: unexpected argument '--outpt' found (tip: a similar argument
/// exists: '--output'); see --help`.
fn clap_message(rendered: &str) -> String {
    let mut parts = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"));
    let mut text = parts.next().unwrap_or("error: bad arguments").to_string();
    for part in parts {
        if part.starts_with("tip:") {
            text += &format!(" ({part})");
        } else {
            text += &format!(" {part}");
        }
    }
    text + "; see --help"
}
