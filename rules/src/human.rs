//! Numbers as people read them in summaries and emails: "25 h", "3 min", "4.2 GiB".

/// A duration in seconds, rounded to the largest sensible unit.
pub fn duration(secs: i64) -> String {
    let neg = secs < 0;
    let s = secs.unsigned_abs();
    let text = if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 {
        format!("{} min", s / 60)
    } else if s < 3 * 86400 {
        format!("{} h", s / 3600)
    } else {
        let days = s as f64 / 86400.0;
        format!("{days:.1} d")
    };
    if neg { format!("-{text}") } else { text }
}

pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(25 * 60), "25 min");
        assert_eq!(duration(25 * 3600), "25 h");
        assert_eq!(duration(8 * 86400), "8.0 d");
        assert_eq!(duration(-7200), "-2 h");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
    }
}
