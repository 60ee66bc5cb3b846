//! Where a controller reads the secrets a topology names by environment
//! variable (`connection.password_env`): the process environment, or a given
//! list (tests), one definition for every backend's config builder.

/// The variables secrets are read from. `Debug` names the variables, never
/// their values.
#[derive(Clone, Default)]
pub struct SecretVars(Option<Vec<(String, String)>>);

impl SecretVars {
    /// The process environment.
    pub fn process() -> Self {
        SecretVars(None)
    }

    /// Exactly these variables and nothing from the process environment.
    pub fn given(vars: Vec<(String, String)>) -> Self {
        SecretVars(Some(vars))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.0 {
            Some(v) => v.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            None => std::env::var(name).ok(),
        }
    }
}

impl std::fmt::Debug for SecretVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("SecretVars(process environment)"),
            Some(v) => f
                .debug_tuple("SecretVars")
                .field(&v.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_variables_shadow_the_environment_and_debug_hides_values() {
        let v = SecretVars::given(vec![("PW".into(), "hunter2".into())]);
        assert_eq!(v.get("PW").as_deref(), Some("hunter2"));
        assert_eq!(v.get("PATH"), None, "nothing from the process environment");
        let dbg = format!("{v:?}");
        assert!(dbg.contains("PW") && !dbg.contains("hunter2"), "{dbg}");
        assert!(SecretVars::process().get("PATH").is_some());
    }
}
