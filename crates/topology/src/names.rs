//! Validated names: everything that reaches a PowerShell command line from a topology passes
//! through these types, so a topology can never inject shell or PowerShell syntax.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a name was rejected. The message reads after "invalid FQDN 'x': ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than 253 characters")]
    TooLong,
    #[error("label '{0}' is empty or longer than 63 characters")]
    BadLabelLength(String),
    #[error("label '{0}' starts or ends with '-'")]
    BadHyphen(String),
    #[error("character {0:?} is not allowed (letters, digits, '-' and '.' only)")]
    BadChar(char),
    #[error("a SQL Server instance name has at most 16 characters")]
    InstanceTooLong,
    #[error("a SQL Server instance name starts with a letter or '_'")]
    InstanceBadStart,
    #[error(
        "character {0:?} is not allowed in a SQL Server instance name (letters, digits, '_', '$', '#')"
    )]
    InstanceBadChar(char),
    #[error("'{0}' is a reserved SQL Server word")]
    InstanceReserved(String),
}

/// A DNS name following RFC 1123 host-name rules: labels of letters, digits and '-', 1 to 63
/// characters each, at most 253 in all. The spelling is kept; comparisons ignore ASCII case.
#[derive(Clone)]
pub struct Fqdn(String);

impl Fqdn {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 253 {
            return Err(NameError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return Err(NameError::BadChar(c));
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(NameError::BadLabelLength(label.to_string()));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::BadHyphen(label.to_string()));
            }
        }
        Ok(Fqdn(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-case form, for maps and lookups.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for Fqdn {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Fqdn {}
impl std::hash::Hash for Fqdn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}
impl PartialOrd for Fqdn {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Fqdn {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}
impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl Serialize for Fqdn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for Fqdn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Fqdn::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid FQDN '{s}': {e}")))
    }
}

/// A SQL Server instance name; the empty string is the default instance (MSSQLSERVER).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SqlInstanceName(String);

impl SqlInstanceName {
    pub fn default_instance() -> Self {
        SqlInstanceName(String::new())
    }

    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Ok(Self::default_instance());
        }
        if s.chars().count() > 16 {
            return Err(NameError::InstanceTooLong);
        }
        let first = s.chars().next().expect("not empty");
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(NameError::InstanceBadStart);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '#')))
        {
            return Err(NameError::InstanceBadChar(c));
        }
        if ["default", "mssqlserver"].contains(&s.to_ascii_lowercase().as_str()) {
            return Err(NameError::InstanceReserved(s.to_string()));
        }
        Ok(SqlInstanceName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SqlInstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(default)")
        } else {
            f.write_str(&self.0)
        }
    }
}
impl fmt::Debug for SqlInstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
impl Serialize for SqlInstanceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for SqlInstanceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SqlInstanceName::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid SQL instance name '{s}': {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_rules() {
        assert!(Fqdn::parse("SKYPE-FE-01.tenant.rlevchenko.com").is_ok());
        assert_eq!(
            Fqdn::parse("a.example.com;Remove-Item x").unwrap_err(),
            NameError::BadChar(';')
        );
        assert_eq!(Fqdn::parse("").unwrap_err(), NameError::Empty);
        assert!(matches!(
            Fqdn::parse("a..b"),
            Err(NameError::BadLabelLength(_))
        ));
        assert!(matches!(Fqdn::parse("-a.b"), Err(NameError::BadHyphen(_))));
        assert_eq!(Fqdn::parse("A.b").unwrap(), Fqdn::parse("a.B").unwrap());
    }

    #[test]
    fn instance_rules() {
        assert!(SqlInstanceName::parse("").unwrap().is_default());
        assert!(SqlInstanceName::parse("rtc").is_ok());
        assert_eq!(
            SqlInstanceName::parse("rtc'; drop").unwrap_err(),
            NameError::InstanceBadChar('\'')
        );
        assert_eq!(
            SqlInstanceName::parse("1rtc").unwrap_err(),
            NameError::InstanceBadStart
        );
    }
}
