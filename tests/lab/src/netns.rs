//! Network namespaces joined to the host by a veth pair, so a test can cut
//! one process (a leader) off the network: `ip link set … down` from the
//! namespace's side. `tc netem` is not available on these kernels; a link
//! taken down is a real partition. Needs root and iproute2.

use std::process::Command;

/// A namespace and its veth pair, removed on drop (deleting the namespace
/// deletes the pair with it).
#[derive(Debug)]
pub struct Netns {
    /// The namespace, for `ip netns exec NAME …`.
    pub name: String,
    /// The veth end inside it.
    pub inner: String,
}

/// Run `ip ARGS`; the error names the command and what `ip` said.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A namespace named after `tag` and this process, `outer_ip` on the
    /// host's end of the pair and `inner_ip` on the namespace's (a /30).
    pub fn new(tag: &str, outer_ip: &str, inner_ip: &str) -> Result<Netns, String> {
        let id = format!("{tag}{}", std::process::id() % 100_000);
        let (name, outer, inner) = (format!("sy{id}"), format!("sy{id}o"), format!("sy{id}i"));
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name: name.clone(),
            inner: inner.clone(),
        };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &name])?;
        ip(&["addr", "add", &format!("{outer_ip}/30"), "dev", &outer])?;
        ip(&["link", "set", &outer, "up"])?;
        let inside = |a: &[&str]| {
            let mut v = vec!["netns", "exec", &name, "ip"];
            v.extend_from_slice(a);
            ip(&v)
        };
        inside(&["addr", "add", &format!("{inner_ip}/30"), "dev", &inner])?;
        inside(&["link", "set", &inner, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// [`Netns::new`], or `None` with a message where namespaces cannot be
    /// made (no root) — but never in CI (`CI` set), where they are required.
    pub fn or_skip(tag: &str, outer_ip: &str, inner_ip: &str) -> Option<Netns> {
        match Netns::new(tag, outer_ip, inner_ip) {
            Ok(n) => Some(n),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "network namespaces are needed in CI: {e}"
                );
                eprintln!("SKIPPED: cannot make a network namespace: {e}");
                None
            }
        }
    }

    /// Cut (`false`) or restore the link, from the namespace's side.
    pub fn link(&self, up: bool) -> Result<(), String> {
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.inner,
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
