//! The independent Python clients that check the simulators in CI.

use std::process::{Command, Stdio};

/// Whether `python3 -c IMPORT` succeeds, i.e. the independent client is
/// installed. When it is not: panics if `require_env` is set (scripts/test.sh
/// sets it after installing the client, so CI cannot pass a check by
/// skipping it), otherwise prints why the check is skipped and returns false.
pub fn available(import: &str, require_env: &str, pip_package: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", import])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os(require_env).is_none(),
            "{require_env} is set but `{import}` fails"
        );
        eprintln!("SKIPPED: {pip_package} is not installed (pip install {pip_package})");
    }
    ok
}
