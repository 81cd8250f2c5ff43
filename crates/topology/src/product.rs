//! Product lines (SPEC.md section 7): what a topology's `Service@ServiceVersion` names, and the
//! build numbers each line's updates carry.

use std::fmt;

use serde::Serialize;

/// A Skype for Business Server product line. A package of one line must never be applied to
/// servers of another.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum ProductLine {
    /// Lync Server 2013: `ServiceVersion="6"`, builds `5.0.8308.*`.
    #[serde(rename = "lync-2013")]
    Lync2013,
    /// Skype for Business Server 2015: `ServiceVersion="7"`, builds `6.0.9319.*`.
    #[serde(rename = "sfb-2015")]
    SfB2015,
    /// Skype for Business Server 2019 (and Subscription Edition, which continues it):
    /// `ServiceVersion="8"`, builds `7.0.2046.*`.
    #[serde(rename = "sfb-2019")]
    SfB2019,
}

impl ProductLine {
    pub const ALL: [ProductLine; 3] = [
        ProductLine::Lync2013,
        ProductLine::SfB2015,
        ProductLine::SfB2019,
    ];

    /// The topology's `ServiceVersion` for this line.
    pub fn service_version(self) -> u32 {
        match self {
            ProductLine::Lync2013 => 6,
            ProductLine::SfB2015 => 7,
            ProductLine::SfB2019 => 8,
        }
    }

    /// The line a `ServiceVersion` value names (`"6"`, `"7"`, `"8"`).
    pub fn from_service_version(value: &str) -> Option<Self> {
        let n: u32 = value.trim().parse().ok()?;
        Self::ALL.into_iter().find(|p| p.service_version() == n)
    }

    /// The first three numbers every build of this line starts with (`7.0.2046`).
    pub fn build_prefix(self) -> [u32; 3] {
        match self {
            ProductLine::Lync2013 => [5, 0, 8308],
            ProductLine::SfB2015 => [6, 0, 9319],
            ProductLine::SfB2019 => [7, 0, 2046],
        }
    }

    /// The line a build belongs to, by its first three numbers.
    pub fn from_build(build: [u32; 4]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.build_prefix() == [build[0], build[1], build[2]])
    }

    /// The year as users name the line: `2013`, `2015`, `2019`.
    pub fn year(self) -> u32 {
        match self {
            ProductLine::Lync2013 => 2013,
            ProductLine::SfB2015 => 2015,
            ProductLine::SfB2019 => 2019,
        }
    }

    /// The line a year names (`"2015"`), as the inventory and `topology generate --product`
    /// spell it.
    pub fn from_year(year: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.year().to_string() == year.trim())
    }

    /// The stable spelling in JSON and manifests: `lync-2013`, `sfb-2015`, `sfb-2019`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductLine::Lync2013 => "lync-2013",
            ProductLine::SfB2015 => "sfb-2015",
            ProductLine::SfB2019 => "sfb-2019",
        }
    }

    /// [`ProductLine::as_str`] or [`ProductLine::from_year`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .or_else(|| Self::from_year(s))
    }

    /// The product's name: `Skype for Business Server 2019`.
    pub fn name(self) -> &'static str {
        match self {
            ProductLine::Lync2013 => "Lync Server 2013",
            ProductLine::SfB2015 => "Skype for Business Server 2015",
            ProductLine::SfB2019 => "Skype for Business Server 2019",
        }
    }
}

impl fmt::Display for ProductLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.build_prefix();
        write!(f, "{} ({a}.{b}.{c}.*)", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_versions_and_builds_name_the_same_line() {
        for (version, build, line) in [
            ("6", [5, 0, 8308, 1], ProductLine::Lync2013),
            ("7", [6, 0, 9319, 881], ProductLine::SfB2015),
            ("8", [7, 0, 2046, 553], ProductLine::SfB2019),
        ] {
            assert_eq!(ProductLine::from_service_version(version), Some(line));
            assert_eq!(ProductLine::from_build(build), Some(line));
            assert_eq!(ProductLine::parse(line.as_str()), Some(line));
            assert_eq!(ProductLine::parse(&line.year().to_string()), Some(line));
        }
        assert_eq!(ProductLine::from_service_version("5"), None);
        assert_eq!(ProductLine::from_service_version("x"), None);
        assert_eq!(ProductLine::from_build([7, 0, 2047, 1]), None);
        assert_eq!(
            ProductLine::SfB2019.to_string(),
            "Skype for Business Server 2019 (7.0.2046.*)"
        );
    }
}
