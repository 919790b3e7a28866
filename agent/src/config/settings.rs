//! `[[settings]]`: WAL configuration compliance of the server of a `[[wal]]` probe.
//!
//! No default instance: it names the `[[wal]]` probe whose connection it uses (`wal`).
//! Hourly by default: settings change rarely, and a reload is seen within the hour.

use super::effective::Settings;
use super::{At, Cx, Section, Valid};
use crate::probe::settings::SettingsProbe;
use backwatch_common::config::de_opt_duration;
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::time::Duration;

pub const SETTINGS_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub name: String,
    /// Name of the `[[wal]]` probe of the server to read (its DSN and timeouts).
    pub wal: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
}

impl Section for RawSettings {
    const KEY: &'static str = "settings";
    const KIND: ProbeKind = ProbeKind::Settings;
    const INTERVAL: Duration = SETTINGS_INTERVAL;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let wal = cx.wal(at, &self.wal)?;
        // The connection's own limits, as the WAL probe's run (one statement instead of three).
        let timeout = wal.connect_timeout + wal.effective_statement_timeout() * 2;
        let settings = Settings::default().set("wal", wal.name.as_str());
        Some(Valid {
            probe: Box::new(SettingsProbe {
                name: self.name,
                wal,
            }),
            timeout: timeout + Duration::from_secs(5),
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str as load;
    use crate::probe::settings::SettingsProbe;

    #[test]
    fn settings_reads_the_server_of_a_wal_probe_hourly() {
        let c = load(
            "[[wal]]\nname = \"main\"\ndsn = \"host=/tmp\"\n[[settings]]\nname = \"main\"\nwal = \"main\"\n",
        )
        .unwrap();
        let (s, p) = c
            .probes_of::<SettingsProbe>()
            .next()
            .expect("settings.main");
        assert_eq!(p.wal.name, "main");
        assert_eq!(s.interval, super::SETTINGS_INTERVAL);
        assert_eq!(s.probe.check_id(), "settings.main");
        let err = load("[[settings]]\nname = \"main\"\nwal = \"mian\"\n")
            .err()
            .unwrap();
        assert!(
            err.contains("settings[0].wal: no [[wal]] probe is named \"mian\" (known: none)"),
            "{err}"
        );
    }
}
