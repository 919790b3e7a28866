//! Running a backup tool's command line for the pgBackRest and Barman probes.
//!
//! The child is killed when the probe's timeout drops the future (`kill_on_drop`), stdin is
//! closed, and only the first [`MAX_OUTPUT`] bytes of each stream are kept.

use super::backup_dir::os_text;
use std::process::Stdio;

const MAX_OUTPUT: usize = 16 << 20;

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stderr's last non-empty line (the tool's own error), else stdout's.
    pub fn last_words(&self) -> String {
        let last = |s: &str| {
            s.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(str::to_string)
        };
        last(&self.stderr)
            .or_else(|| last(&self.stdout))
            .unwrap_or_else(|| format!("exit status {:?}", self.code))
    }
}

/// The command line as shown to people.
pub fn shown(argv: &[String]) -> String {
    argv.join(" ")
}

pub async fn run(argv: &[String]) -> Result<Output, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running {prog}: {}", os_text(&e)))?;
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned();
    Ok(Output {
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    })
}

/// The JSON document in `stdout`, skipping anything printed before it.
pub fn json(out: &Output) -> Result<serde_json::Value, String> {
    let start = out
        .stdout
        .find(['{', '['])
        .ok_or_else(|| format!("no JSON in the output: {}", out.last_words()))?;
    serde_json::from_str(&out.stdout[start..]).map_err(|e| format!("unreadable JSON: {e}"))
}
