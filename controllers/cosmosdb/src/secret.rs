//! Secrets (master key, client secret) read from the environment or a file,
//! never printed.

use crate::error::{CResult, CosmosError};

/// A secret value; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret comes from (kept so it can be re-read, e.g. after rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Environment variable name.
    Env(String),
    /// File path; surrounding whitespace is trimmed.
    File(String),
}

impl SecretSource {
    /// Read it; the error names `field` and the variable or file, never the value.
    pub fn load(&self, field: &str) -> CResult<Secret> {
        match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                _ => Err(CosmosError::config(
                    field,
                    format!("environment variable `{var}` is not set"),
                )),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => Err(CosmosError::config(
                    field,
                    format!("file `{path}` is empty"),
                )),
                Err(e) => Err(CosmosError::config(
                    field,
                    format!("cannot read `{path}`: {e}"),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }
}
