//! A real `switchyard serve` process for tests (API and console), and
//! tokens for it.

use super::Workspace;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

/// A `switchyard serve` process, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub stderr: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(ws: &Workspace, tokens: &std::path::Path, node: &str, extra: &[&str]) -> Server {
        Self::start_env(ws, tokens, node, extra, &[])
    }

    /// [`Server::start`] with environment variables for the server.
    pub fn start_env(
        ws: &Workspace,
        tokens: &std::path::Path,
        node: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::start_at(ws, tokens, node, "127.0.0.1:0", extra, env)
    }

    /// [`Server::start_env`] listening on `listen` (say, the address a
    /// stopped server listened on).
    pub fn start_at(
        ws: &Workspace,
        tokens: &std::path::Path,
        node: &str,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let stderr = ws.path(&format!("{node}.stderr"));
        let mut c = ws.command(&[
            "serve",
            "--listen",
            listen,
            "--node",
            node,
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--observe-interval-ms",
            "500",
        ]);
        c.args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = c.spawn().unwrap();
        // The first stdout line says where the server we started listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "serve's first line {line:?}: {e}; stderr: {}",
                read(&stderr)
            )
        });
        Server {
            child,
            url: v["url"].as_str().unwrap().to_string(),
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        read(&self.stderr)
    }
}

pub fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub fn token(ws: &Workspace, tokens: &std::path::Path, role: &str) -> String {
    token_for(ws, tokens, role, None)
}

/// A token with `role` held by `name` (the journal names them).
pub fn named_token(ws: &Workspace, tokens: &std::path::Path, role: &str, name: &str) -> String {
    token_for(ws, tokens, role, Some(name))
}

fn token_for(ws: &Workspace, tokens: &std::path::Path, role: &str, name: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--role", role];
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    args.extend(["--tokens-file", tokens.to_str().unwrap()]);
    let r = ws.run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}
