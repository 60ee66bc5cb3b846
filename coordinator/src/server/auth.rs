//! Bearer tokens with roles, stored hashed.
//!
//! The tokens file holds one JSON object per line:
//! `{"id":"tok-1a2b3c4d","role":"operator","sha256":"<hex>","created":"…"}`.
//! Only the SHA-256 of a token is stored: a token is 32 random bytes, so a
//! slow password hash would add nothing (there is nothing to guess), and a
//! stolen file gives no token. `switchyard token create` prints the token
//! once; nobody can print it again.
//!
//! A token may carry the name of the person who holds it (`"name":"bob"`,
//! `switchyard token create --name bob`): the journal and the history name
//! who started an execution, and the two-person rule compares requester and
//! approver, by that name (a token without one is known by its id).
//!
//! Roles are ordered: a viewer reads (topology, state, plans, executions,
//! events, metrics); an operator also starts, resumes and aborts; an
//! approver also starts what may lose data (`accept_data_loss`) and
//! approves executions that wait for a second person.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Start, resume and abort executions.
    Operator,
    /// Start executions that may lose data (`accept_data_loss`), and
    /// approve executions that wait for a second person.
    Approver,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "approver" => Ok(Role::Approver),
            other => Err(format!(
                "unknown role `{other}`; expected viewer, operator or approver"
            )),
        }
    }
}

/// One line of the tokens file.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Public name of the token (logs and metrics may show it).
    pub id: String,
    /// Who holds it (the person the journal names); `None`: known by `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// When it was created (UTC).
    #[serde(default)]
    pub created: String,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the token, but it has no business in a log either.
        f.debug_struct("TokenEntry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token: String,
    /// Who holds it: the token's name, or its id when it has none.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// The caller as the journal names a person.
    pub fn identity(&self) -> crate::approval::Identity {
        crate::approval::Identity::bearer(&self.name, &self.token)
    }
}

fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Tokens {
    /// Read a tokens file; a missing file is an error (a server without
    /// tokens would refuse everyone, which is surely not what was meant).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read tokens file: {e}", path.display()))?;
        let mut entries = vec![];
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let e: TokenEntry = serde_json::from_str(line).map_err(|e| {
                format!(
                    "{}:{}: not a token entry ({e}); expected {{\"id\",\"role\",\"sha256\"}}",
                    path.display(),
                    n + 1
                )
            })?;
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}:{}: field `sha256`: expected 64 hex digits",
                    path.display(),
                    n + 1
                ));
            }
            entries.push(e);
        }
        Ok(Tokens { entries })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No tokens at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a bearer token belongs to, if any.
    pub fn check(&self, bearer: &str) -> Option<Caller> {
        let h = sha256_hex(bearer);
        self.entries
            .iter()
            .find(|e| e.sha256.eq_ignore_ascii_case(&h))
            .map(|e| Caller {
                token: e.id.clone(),
                name: e.name.clone().unwrap_or_else(|| e.id.clone()),
                role: e.role,
            })
    }
}

/// Create a token with `role` for the person `name` (if given), append its
/// hash to `path` (created with mode 0600 if missing), and return the token
/// and its id. The token itself is stored nowhere.
pub fn create(path: &Path, role: Role, name: Option<&str>) -> Result<(String, String), String> {
    if let Some(n) = name {
        if n.trim().is_empty() || n.chars().any(char::is_control) {
            return Err(format!(
                "--name: `{n}` is not a name (empty, or a control character)"
            ));
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("no randomness for a token: {e}"))?;
    let mut token = String::from("sy_");
    for b in raw {
        let _ = write!(token, "{b:02x}");
    }
    let hash = sha256_hex(&token);
    let id = format!("tok-{}", &hash[..8]);
    let entry = TokenEntry {
        id: id.clone(),
        name: name.map(str::to_string),
        role,
        sha256: hash,
        created: crate::journal::format_ms(crate::journal::now_ms()),
    };
    let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((token, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_is_accepted_with_its_role_and_stored_only_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let (op, op_id) = create(&file, Role::Operator, None).unwrap();
        let (viewer, _) = create(&file, Role::Viewer, Some("bob")).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&op) && !text.contains(&viewer), "{text}");
        let tokens = Tokens::load(&file).unwrap();
        assert_eq!(tokens.len(), 2);
        let c = tokens.check(&op).unwrap();
        assert_eq!((c.role, c.token.as_str()), (Role::Operator, op_id.as_str()));
        assert_eq!(c.name, op_id, "a token without a name is known by its id");
        let v = tokens.check(&viewer).unwrap();
        assert_eq!((v.role, v.name.as_str()), (Role::Viewer, "bob"));
        assert!(tokens.check("sy_nope").is_none());
        assert!(Role::Approver > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(
            &file,
            "# comment\n{\"id\":\"a\",\"role\":\"boss\",\"sha256\":\"00\"}\n",
        )
        .unwrap();
        let e = Tokens::load(&file).unwrap_err();
        assert!(e.contains("tokens:2:"), "{e}");
    }
}
