//! A string that never prints its value.

use std::fmt;

/// Holds a secret (an AccessKey secret or an STS token). `Debug` and `Display` print
/// `[REDACTED]`; only [`SecretString::expose`] gives the value, for signing.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            secret: SecretString,
        }
        let printed = format!("{:?}", Holder { secret: s.clone() });
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
