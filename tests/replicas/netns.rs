//! A network namespace for a replica that can be cut off rather than
//! stopped: made by the test (`ip netns`, a veth pair on a /30 of
//! 10.231.0.0/16), and cutting it drops every packet into the namespace
//! (nftables inside the namespace, so the machine's own rules are untouched):
//! connecting to it hangs, and connections to it stop carrying data. The
//! replica tests and `cargo xtask load` share this file.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct Namespace {
    name: String,
    host_link: String,
    subnet: u8,
}

/// Runs `ip` (or `nft`) with `args`; whether it succeeded.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

impl Namespace {
    /// A namespace linked to this one, or `None` where namespaces cannot be
    /// made or cut off (not root; no `ip`, `nft` or `nsenter`).
    pub(crate) fn create() -> Option<Namespace> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if !rustix::process::geteuid().is_root()
            || !run("ip", &["-V"])
            || !run("nft", &["--version"])
            || !run("nsenter", &["--version"])
        {
            return None;
        }
        let id = std::process::id() % 10_000 * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10;
        let subnet = u8::try_from(id % 250).unwrap() + 1;
        let namespace = Namespace {
            name: format!("fxr{id}"),
            host_link: format!("fxh{id}"),
            subnet,
        };
        let (name, host, inside) = (&namespace.name, &namespace.host_link, format!("fxn{id}"));
        let host_address = format!("10.231.{subnet}.1/30");
        let inside_address = format!("10.231.{subnet}.2/30");
        let steps: [(&str, Vec<&str>); 8] = [
            ("ip", vec!["netns", "add", name]),
            (
                "ip",
                vec!["link", "add", host, "type", "veth", "peer", "name", &inside],
            ),
            ("ip", vec!["link", "set", &inside, "netns", name]),
            ("ip", vec!["addr", "add", &host_address, "dev", host]),
            ("ip", vec!["link", "set", host, "up"]),
            (
                "ip",
                vec![
                    "netns",
                    "exec",
                    name,
                    "ip",
                    "addr",
                    "add",
                    &inside_address,
                    "dev",
                    &inside,
                ],
            ),
            (
                "ip",
                vec!["netns", "exec", name, "ip", "link", "set", &inside, "up"],
            ),
            (
                "ip",
                vec!["netns", "exec", name, "ip", "link", "set", "lo", "up"],
            ),
        ];
        for (program, args) in &steps {
            assert!(
                run(program, args),
                "cannot set up the namespace: {program} {args:?}"
            );
        }
        Some(namespace)
    }

    /// The replica's address inside the namespace.
    pub(crate) fn address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 2)
    }

    /// Its name, for `ip netns exec`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The path that enters it (`setns`).
    pub(crate) fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Drops every packet that comes into the namespace from now on.
    pub(crate) fn cut(&self) -> Result<(), String> {
        let name = self.name.as_str();
        let chain = "{ type filter hook input priority 0; policy drop; }";
        let steps: [&[&str]; 2] = [
            &[
                "netns", "exec", name, "nft", "add", "table", "inet", "fxcut",
            ],
            &[
                "netns", "exec", name, "nft", "add", "chain", "inet", "fxcut", "input", chain,
            ],
        ];
        for args in steps {
            if !run("ip", args) {
                return Err(format!("cannot cut the namespace off: ip {args:?}"));
            }
        }
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        run("ip", &["netns", "del", &self.name]);
        run("ip", &["link", "del", &self.host_link]);
    }
}
