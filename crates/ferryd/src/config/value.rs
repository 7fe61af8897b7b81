//! How `ferryd.toml` writes its values. Every bounded key goes through [`Bounded`], one
//! range check over a [`Kind`] of value (counts, durations, rates, sizes, shares of the
//! disk, local times); names out of a fixed set through [`by_name`]; other checked text
//! (a group name, an address) through [`text`]. A refusal is a serde error whose
//! "expected" says what the key takes; the loader adds the key and the value.
//!
//! May use: nothing of the daemon (`ferry-common` for rates and sizes).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use strum::VariantNames;

/// As a bound: no upper bound but the kind's own ([`Kind::LARGEST`]).
pub(super) const ANY: u64 = u64::MAX;

/// A bounded value as the file writes it: a TOML integer or a string.
#[derive(Clone, Copy)]
pub(super) enum Written<'a> {
    Integer(i64),
    Text(&'a str),
}

/// One kind of bounded value: how it is written, and its measure, in the unit its
/// bounds are given in.
pub(super) trait Kind {
    /// The Rust type of a value.
    type Value;
    /// What a value is, for "expected …": "a duration".
    const WHAT: &'static str;
    /// How one is written, for "expected … such as …" ("" for nothing to add).
    const EXAMPLES: &'static str;
    /// The largest measure any key of this kind takes.
    const LARGEST: u64;
    /// The value written, `None` when it is not one of this kind.
    fn parse(written: Written<'_>) -> Option<Self::Value>;
    /// The value's measure, compared with the bounds.
    fn measure(value: &Self::Value) -> u64;
    /// A measure as people write it, for messages.
    fn show(measure: u64) -> String;
    /// The value written back as [`Kind::parse`] reads it.
    fn write<S: Serializer>(value: &Self::Value, s: S) -> Result<S::Ok, S::Error>;
}

/// `#[serde(with = "Bounded::<K, MIN, MAX>")]`: a value of kind `K` whose measure is from
/// `MIN` to `MAX` ([`ANY`]: up to `K::LARGEST`). Anything else is refused with the range.
pub(super) struct Bounded<K, const MIN: u64, const MAX: u64>(PhantomData<fn() -> K>);

impl<K: Kind, const MIN: u64, const MAX: u64> Bounded<K, MIN, MAX> {
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<K::Value, D::Error> {
        d.deserialize_any(Bounded::<K, MIN, MAX>(PhantomData))
    }

    pub(super) fn serialize<S: Serializer>(value: &K::Value, s: S) -> Result<S::Ok, S::Error> {
        K::write(value, s)
    }

    /// The value `written` (`unexpected` in a refusal), if it is of kind `K` and in range.
    pub(super) fn check<E: de::Error>(
        written: Written<'_>,
        unexpected: Unexpected<'_>,
    ) -> Result<K::Value, E> {
        let value = K::parse(written).ok_or_else(|| {
            E::invalid_value(unexpected, &expected::<K>(MIN, MAX, false).as_str())
        })?;
        let max = MAX.min(K::LARGEST);
        let measure = K::measure(&value);
        if (MIN..=max).contains(&measure) {
            Ok(value)
        } else {
            Err(E::invalid_value(
                unexpected,
                &expected::<K>(MIN, MAX, measure > max).as_str(),
            ))
        }
    }
}

/// "a duration such as 30s, 15m, 7d", "a whole number from 1 to 64": what a key of kind
/// `K` bounded by `min` and `max` takes. An upper bound of [`ANY`] (the kind's largest)
/// is named only to a value `above` it.
fn expected<K: Kind>(min: u64, max: u64, above: bool) -> String {
    let upper = (max != ANY || above).then(|| K::show(max.min(K::LARGEST)));
    let range = match (min, upper) {
        (0, None) => String::new(),
        (min, None) => format!(" of at least {}", K::show(min)),
        (0, Some(max)) => format!(" up to {max}"),
        (min, Some(max)) => format!(" from {} to {max}", K::show(min)),
    };
    match K::EXAMPLES {
        "" => format!("{}{range}", K::WHAT),
        examples => format!("{}{range} such as {examples}", K::WHAT),
    }
}

impl<'de, K: Kind, const MIN: u64, const MAX: u64> Visitor<'de> for Bounded<K, MIN, MAX> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&expected::<K>(MIN, MAX, false))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<K::Value, E> {
        Self::check(Written::Integer(n), Unexpected::Signed(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<K::Value, E> {
        match i64::try_from(n) {
            Ok(n) => self.visit_i64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(n), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<K::Value, E> {
        Self::check(Written::Text(s), Unexpected::Str(s))
    }
}

/// A number of things (jobs, files, connections, peers): a TOML integer.
pub(super) struct Count<T>(PhantomData<fn() -> T>);

impl<T> Kind for Count<T>
where
    T: Copy + TryFrom<i64>,
    u64: TryFrom<T>,
{
    type Value = T;
    const WHAT: &'static str = "a whole number";
    const EXAMPLES: &'static str = "";
    const LARGEST: u64 = i64::MAX as u64;

    fn parse(written: Written<'_>) -> Option<T> {
        match written {
            Written::Integer(n) => T::try_from(n).ok(),
            Written::Text(_) => None,
        }
    }

    fn measure(value: &T) -> u64 {
        u64::try_from(*value).unwrap_or(u64::MAX)
    }

    fn show(measure: u64) -> String {
        measure.to_string()
    }

    fn write<S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(Self::measure(value))
    }
}

/// A length of time as humantime writes it (`30s`, `15m`, `7d`, `1h 30m`); bounds in
/// milliseconds.
pub(super) struct Span;

/// Milliseconds in a second, for the bounds of durations.
pub(super) const SECOND: u64 = 1000;

impl Kind for Span {
    type Value = Duration;
    const WHAT: &'static str = "a duration";
    const EXAMPLES: &'static str = "30s, 15m, 7d";
    /// A century (humantime's years of 365.25 days): deadlines and ages computed from a
    /// longer one would overflow the clocks' arithmetic.
    const LARGEST: u64 = 100 * 31_557_600 * SECOND;

    fn parse(written: Written<'_>) -> Option<Duration> {
        match written {
            Written::Text(s) => humantime::parse_duration(s.trim()).ok(),
            Written::Integer(_) => None,
        }
    }

    fn measure(value: &Duration) -> u64 {
        u64::try_from(value.as_millis()).unwrap_or(u64::MAX)
    }

    fn show(measure: u64) -> String {
        humantime::format_duration(Duration::from_millis(measure)).to_string()
    }

    fn write<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*value))
    }
}

/// Bytes per second: an integer, or a rate such as `"10MiB/s"` (ferry-common's units).
pub(super) struct Rate;

impl Kind for Rate {
    type Value = u64;
    const WHAT: &'static str = "a rate in bytes per second";
    const EXAMPLES: &'static str = "\"10MiB/s\", \"500k\", 1048576";
    const LARGEST: u64 = u64::MAX;

    fn parse(written: Written<'_>) -> Option<u64> {
        match written {
            Written::Integer(n) => u64::try_from(n).ok(),
            Written::Text(s) => ferry_common::units::parse_rate(s).ok(),
        }
    }

    fn measure(value: &u64) -> u64 {
        *value
    }

    fn show(measure: u64) -> String {
        ferry_common::units::format_rate(measure)
    }

    fn write<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value)
    }
}

/// A number of bytes: an integer, or a size such as `"20GiB"` (ferry-common's units).
pub(super) struct Size;

impl Kind for Size {
    type Value = u64;
    const WHAT: &'static str = "a size";
    const EXAMPLES: &'static str = "\"20GiB\", \"500MB\", 1073741824";
    const LARGEST: u64 = u64::MAX;

    fn parse(written: Written<'_>) -> Option<u64> {
        match written {
            Written::Integer(n) => u64::try_from(n).ok(),
            Written::Text(s) => ferry_common::units::parse_size(s).ok(),
        }
    }

    fn measure(value: &u64) -> u64 {
        *value
    }

    fn show(measure: u64) -> String {
        ferry_common::units::format_size(measure)
    }

    fn write<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value)
    }
}

/// A percentage such as `"1%"` or `"0.5%"`; bounds in hundredths of a percent.
pub(super) struct Share;

impl Kind for Share {
    type Value = f64;
    const WHAT: &'static str = "a share of the disk";
    const EXAMPLES: &'static str = "\"1%\"";
    const LARGEST: u64 = u64::MAX;

    fn parse(written: Written<'_>) -> Option<f64> {
        match written {
            Written::Text(s) => s
                .trim()
                .strip_suffix('%')?
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite()),
            Written::Integer(_) => None,
        }
    }

    fn measure(value: &f64) -> u64 {
        // A negative share measures as the largest, so that every upper bound refuses it.
        if *value < 0.0 {
            return u64::MAX;
        }
        (value * 100.0).ceil() as u64
    }

    fn show(measure: u64) -> String {
        format!("{}%", measure as f64 / 100.0)
    }

    fn write<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{value}%"))
    }
}

/// A local time of day, `HH:MM`, measured in minutes after midnight.
pub(super) struct ClockTime;

impl Kind for ClockTime {
    type Value = u16;
    const WHAT: &'static str = "a local time as HH:MM";
    const EXAMPLES: &'static str = "08:00, 18:30";
    const LARGEST: u64 = 24 * 60;

    fn parse(written: Written<'_>) -> Option<u16> {
        let Written::Text(s) = written else {
            return None;
        };
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        if m >= 60 {
            return None;
        }
        h.checked_mul(60)?.checked_add(m)
    }

    fn measure(value: &u16) -> u64 {
        u64::from(*value)
    }

    fn show(measure: u64) -> String {
        format!("{:02}:{:02}", measure / 60, measure % 60)
    }

    fn write<S: Serializer>(value: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Self::show(Self::measure(value)))
    }
}

/// A string that `parse` takes; `expected` says what that is.
pub(super) fn text<'de, D, T>(
    d: D,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Text<'a, F>(&'a str, F);

    impl<'de, T, F: FnOnce(&str) -> Option<T>> Visitor<'de> for Text<'_, F> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            let expected = self.0;
            (self.1)(s).ok_or_else(|| E::invalid_value(Unexpected::Str(s), &expected))
        }
    }

    d.deserialize_str(Text(expected, parse))
}

/// One of an enum's names, in any ASCII case (as its `FromStr` takes them).
pub(super) fn by_name<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + VariantNames,
{
    let expected = format!("one of {}", T::VARIANTS.join(", "));
    text(d, &expected, |s| s.parse().ok())
}

/// An enum's name, as [`by_name`] reads it.
pub(super) fn name_of<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    T: Copy + Into<&'static str>,
    S: Serializer,
{
    s.serialize_str((*value).into())
}

/// [`by_name`] for an element of a list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Named<T>(pub T);

impl<'de, T: FromStr + VariantNames> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d).map(Named)
    }
}

impl<T: Copy + Into<&'static str>> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        name_of(&self.0, s)
    }
}

/// A Unix group's name: not empty, without `:`, a line break or NUL (`/etc/group`'s
/// separators).
pub(super) fn group_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, "a group name (no ':', line break or NUL)", |s| {
        (!s.is_empty() && !s.contains([':', '\n', '\0'])).then(|| s.to_string())
    })
}
