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
