//! Sizes and rates: parsed as people write them (`1MiB/s`, `500k`, `2 MB`, a plain number
//! of bytes) and formatted as ferry prints them (`1.5 MiB`, `1.5 MiB/s`).
//!
//! Units: `b`; `k`/`kb` (10³), `kib` (2¹⁰); `m`/`mb`, `mib`; `g`/`gb`, `gib`; `t`/`tb`,
//! `tib`; any case, with or without a space before the unit.

/// The multiplier of a unit, `None` if unknown.
fn unit(text: &str) -> Option<f64> {
    Some(match text.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// A number and a unit; `what` and `example` word the errors.
fn parse_amount(text: &str, body: &str, what: &str, example: &str) -> Result<u64, String> {
    let body = body.trim();
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, unit_text) = body.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a {what} (e.g. {example})"))?;
    let unit_text = unit_text.trim();
    let mult =
        unit(unit_text).ok_or_else(|| format!("unknown unit '{unit_text}' in {what} '{text}'"))?;
    // `as` saturates: an absurd size becomes u64::MAX, not a wrapped number.
    Ok((n * mult) as u64)
}

/// Parses a size such as `4MiB`, `500k`, `2 GB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_amount(text, text, "size", "4MiB, 500KiB, 2GB")
}

/// Parses a rate in bytes per second such as `1MiB/s`, `500k`, `2 MB/s` or a plain number.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let body = t.strip_suffix("/s").unwrap_or(t);
    parse_amount(text, body, "rate", "1MiB/s, 500KiB/s, 2MB/s")
}

/// A size in binary units with one decimal: `512 B`, `1.5 MiB`, `3.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate in bytes per second as [`format_size`] writes sizes, with `/s`: `1.5 MiB/s`.
pub fn format_rate(bytes_per_sec: u64) -> String {
    format!("{}/s", format_size(bytes_per_sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1MiB/s").unwrap(), 1 << 20);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("2 MB/s").unwrap(), 2_000_000);
        assert_eq!(parse_rate(" 1.5 KiB/s ").unwrap(), 1536);
        assert_eq!(parse_rate("2048").unwrap(), 2048);
        assert_eq!(parse_rate("0").unwrap(), 0);
        assert_eq!(
            parse_rate("fast").unwrap_err(),
            "'fast' is not a rate (e.g. 1MiB/s, 500KiB/s, 2MB/s)"
        );
        assert_eq!(
            parse_rate("3 parsecs").unwrap_err(),
            "unknown unit 'parsecs' in rate '3 parsecs'"
        );
        assert!(parse_rate("/s").is_err());
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("1 tib").unwrap(), 1 << 40);
        assert_eq!(parse_size("7b").unwrap(), 7);
        assert!(parse_size("1MiB/s")
            .unwrap_err()
            .contains("unknown unit 'MiB/s'"));
        assert_eq!(parse_size("99999999999999999999 TiB").unwrap(), u64::MAX);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536 * 1024), "1.5 MiB");
        assert_eq!(format_size(u64::MAX), "16384.0 PiB");
        assert_eq!(format_rate(1 << 20), "1.0 MiB/s");
    }

    #[test]
    fn formatted_sizes_parse_back_within_rounding() {
        for n in [1u64, 999, 1024, 5_000_000, 3 << 30, 12_345_678_901] {
            let back = parse_size(&format_size(n)).unwrap();
            let err = back.abs_diff(n) as f64 / n as f64;
            assert!(err < 0.05, "{n} -> {} -> {back}", format_size(n));
        }
    }
}
