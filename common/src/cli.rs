//! Command-line pieces both binaries share: shell completions and man pages generated from
//! the clap definitions (so they cannot drift from `--help`), and the version string.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `--version`: the crate version and the commit it was built from (see `build/version.rs`).
#[macro_export]
macro_rules! version_string {
    () => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (commit ",
            env!("BACKWATCH_GIT_COMMIT"),
            ")"
        )
    };
}

/// Parse the command line; for a mistake in a monitoring plugin's command line (`plugin`
/// says whether the words ask for one), say so in one line on standard output and exit 3,
/// UNKNOWN: clap's own exit 2 would read as CRITICAL to Nagios and Icinga, and its message on
/// standard error is not shown there. `--help` and `--version` stay clap's.
pub fn parse_or_plugin_unknown<C: clap::Parser>(plugin: impl Fn(&[String]) -> bool) -> C {
    let args: Vec<String> = std::env::args().collect();
    match C::try_parse_from(&args) {
        Ok(c) => c,
        Err(e)
            if plugin(&args)
                && !matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
        {
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            println!(
                "BACKWATCH UNKNOWN - command line: {}",
                first.replace('|', "/")
            );
            std::process::exit(3);
        }
        Err(e) => e.exit(),
    }
}

/// Print the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
}

/// Write `<name>.1` and one `<name>-<sub>.1` per subcommand (nested ones too) into `dir`,
/// creating it; every page carries `version`. Returns the files written.
pub fn man_pages(
    cmd: clap::Command,
    version: &'static str,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let name = cmd.get_name().to_string();
    write_page(cmd, version, &name, &name, dir, &mut written)?;
    Ok(written)
}

/// `stem` names the file (`backwatch-agent-config-check`), `bin` the command line
/// (`backwatch-agent config check`).
fn write_page(
    cmd: clap::Command,
    version: &'static str,
    stem: &str,
    bin: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let cmd = cmd
        .disable_help_subcommand(true)
        .display_name(stem.to_string())
        .bin_name(bin.to_string());
    let path = dir.join(format!("{stem}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(stem.to_uppercase())
        .source(format!("{bin} {version}"))
        .render(&mut buf)?;
    std::fs::File::create(&path)?.write_all(&buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        write_page(
            sub.clone(),
            version,
            &format!("{stem}-{name}"),
            &format!("{bin} {name}"),
            dir,
            written,
        )?;
    }
    Ok(())
}
