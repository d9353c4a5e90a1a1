//! Where sandboxes may connect to, enforced on the host with iptables (`OCAAS_EGRESS`).
//!
//! Two chains of ocaas's own, filled atomically with `iptables-restore --noflush`:
//! - `OCAAS-EGRESS`, jumped to from Docker's `DOCKER-USER` chain (FORWARD) for packets coming
//!   from the sandbox bridge: what sandboxes may reach beyond the host;
//! - `OCAAS-HOST`, jumped to from INPUT for the same bridge: what they may reach on the host
//!   itself (any of its addresses), which FORWARD never sees.
//!
//! `public` (default): replies, the host's DNS servers, the operator's allowlist
//! (`OCAAS_EGRESS_ALLOW`) and the public internet; not the host (but for the ports ocaas offers
//! to sandboxes), not loopback, link-local (cloud metadata), private, CGNAT, benchmark,
//! multicast or reserved ranges. `none`: only replies, DNS, the allowlist and ocaas's ports.
//! `open`: no rules at all (the chains are removed). The first rule of each chain is a comment
//! with a digest of the policy, so checking that the rules are in place costs one listing; they
//! are re-applied by the reconciler after an engine or firewall restart dropped them.
//! Sandboxes get no IPv6 (the sandbox network has none), so only IPv4 is filtered.

use std::net::Ipv4Addr;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::RuntimeResult;

const FORWARD_CHAIN: &str = "OCAAS-EGRESS";
const INPUT_CHAIN: &str = "OCAAS-HOST";
/// Docker's chain for user rules, evaluated before its own in FORWARD.
const DOCKER_USER: &str = "DOCKER-USER";

/// Not the public internet: this host's loopback, "this network", private (RFC 1918), CGNAT,
/// link-local (cloud metadata at 169.254.169.254), IETF protocol assignments, benchmarking,
/// multicast and reserved.
pub const BLOCKED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
];

/// Whether `ip` is on the public internet: IPv4 outside `BLOCKED`; IPv6 in global unicast
/// (`2000::/3`) but not documentation, Teredo or the IETF's protocol assignments; and an IPv6
/// address that carries an IPv4 one (mapped `::ffff:0:0/96`, compatible `::/96`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) judged by the IPv4 address it reaches.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(_) => !BLOCKED.iter().any(|cidr| crate::net::parse_net(cidr).is_ok_and(|net| net.contains(ip))),
        std::net::IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public(v4.into()),
            None => {
                let s = v6.segments();
                let global_unicast = s[0] & 0xe000 == 0x2000;
                let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
                // 2001::/23: Teredo (2001::/32), ORCHID, benchmarking and other assignments.
                let ietf = s[0] == 0x2001 && s[1] < 0x0200;
                global_unicast && !documentation && !ietf
            }
        },
    }
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that reach one.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(low),
        // IPv4-compatible (deprecated), but not `::` and `::1`, which are IPv6's own.
        [0, 0, 0, 0, 0, 0, ..] if u32::from(low) > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum EgressMode {
    /// The public internet and ocaas's own endpoints; nothing private, local or on the host.
    #[default]
    Public,
    /// Only ocaas's own endpoints and the allowlist.
    None,
    /// No filtering by ocaas.
    Open,
}

/// One allowlist entry: `CIDR` or `CIDR:PORT` (TCP), e.g. `10.20.0.0/16` or `10.0.0.5/32:5432`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AllowRule {
    pub net: Ipv4Addr,
    pub prefix: u8,
    pub port: Option<u16>,
}

impl FromStr for AllowRule {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let bad = || format!("`{raw}` is not an IPv4 CIDR with an optional :port (e.g. 10.20.0.0/16 or 10.0.0.5/32:5432)");
        let (net, port) = match raw.trim().rsplit_once(':') {
            Some((net, port)) => (net, Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?)),
            None => (raw.trim(), None),
        };
        let (address, prefix) = net.split_once('/').unwrap_or((net, "32"));
        let net = address.parse::<Ipv4Addr>().map_err(|_| bad())?;
        let prefix = prefix.parse::<u8>().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        Ok(AllowRule { net, prefix, port })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EgressPolicy {
    pub mode: EgressMode,
    pub allow: Vec<AllowRule>,
    /// TCP port ranges on the host that sandboxes may reach (the endpoints ocaas offers them).
    pub host_ports: Vec<(u16, u16)>,
}

fn rule(chain: &str, spec: &str) -> String {
    format!("-A {chain} {spec}")
}

/// The `iptables-restore` input that makes both chains hold `policy` for `bridge`.
pub fn ruleset(policy: &EgressPolicy, nameservers: &[Ipv4Addr]) -> String {
    let digest = digest(policy, nameservers);
    let mut lines = vec!["*filter".to_owned(), format!(":{FORWARD_CHAIN} - [0:0]"), format!(":{INPUT_CHAIN} - [0:0]")];
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        lines.push(rule(chain, &format!("-m comment --comment \"ocaas policy {digest}\"")));
        lines.push(rule(chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"));
        for server in nameservers {
            for proto in ["udp", "tcp"] {
                lines.push(rule(chain, &format!("-d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN")));
            }
        }
        for allow in &policy.allow {
            let port = allow.port.map(|p| format!(" -p tcp -m tcp --dport {p}")).unwrap_or_default();
            lines.push(rule(chain, &format!("-d {}/{}{port} -j RETURN", allow.net, allow.prefix)));
        }
    }
    for (first, last) in &policy.host_ports {
        let ports = if first == last { first.to_string() } else { format!("{first}:{last}") };
        lines.push(rule(INPUT_CHAIN, &format!("-p tcp -m tcp --dport {ports} -j RETURN")));
    }
    lines.push(rule(INPUT_CHAIN, "-j REJECT"));
    match policy.mode {
        EgressMode::Public => lines.extend(BLOCKED.iter().map(|net| rule(FORWARD_CHAIN, &format!("-d {net} -j REJECT")))),
        EgressMode::None => lines.push(rule(FORWARD_CHAIN, "-j REJECT")),
        EgressMode::Open => {}
    }
    lines.push("COMMIT".into());
    lines.join("\n") + "\n"
}

fn digest(policy: &EgressPolicy, nameservers: &[Ipv4Addr]) -> String {
    let hash = Sha256::digest(format!("{policy:?} {nameservers:?} v1"));
    crate::secrets::hex(&hash[..8])
}

/// Non-loopback IPv4 name servers of the host (the engine's embedded DNS forwards to them).
pub fn host_nameservers() -> Vec<Ipv4Addr> {
    let mut servers = Vec::new();
    for file in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            if let Some(Ok(address)) = line.strip_prefix("nameserver").map(|rest| rest.trim().parse::<Ipv4Addr>())
                && !address.is_loopback()
                && !servers.contains(&address)
            {
                servers.push(address);
            }
        }
    }
    servers
}

async fn iptables(args: &[&str], stdin: Option<&str>) -> RuntimeResult<String> {
    let program = if stdin.is_some() { "iptables-restore" } else { "iptables" };
    let args: Vec<&std::ffi::OsStr> = std::iter::once("-w").chain(args.iter().copied()).map(std::ffi::OsStr::new).collect();
    super::host::run("egress policy", program, &args, stdin).await
}

/// (chain, rule) of the jumps from Docker's chains into ocaas's for packets from `bridge`.
fn jumps(bridge: &str) -> [(&'static str, [&str; 4]); 2] {
    [(DOCKER_USER, ["-i", bridge, "-j", FORWARD_CHAIN]), ("INPUT", ["-i", bridge, "-j", INPUT_CHAIN])]
}

/// Puts `policy` in place for sandboxes on `bridge` if it is not already; returns whether
/// anything had to change. Idempotent and cheap when nothing changed.
pub async fn ensure(bridge: &str, policy: &EgressPolicy) -> RuntimeResult<bool> {
    if policy.mode == EgressMode::Open {
        return remove(bridge).await;
    }
    // Another process (a second server, `ocaas admin egress remove`) may take the chains away
    // between our steps: then the whole check runs again.
    let mut attempt = 1;
    loop {
        match ensure_once(bridge, policy).await {
            Err(error) if attempt < 3 => {
                tracing::debug!(%error, attempt, "egress rules changed under us; applying again");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn ensure_once(bridge: &str, policy: &EgressPolicy) -> RuntimeResult<bool> {
    let nameservers = host_nameservers();
    let digest = digest(policy, &nameservers);
    let mut changed = false;
    if listing().await.matches(&format!("ocaas policy {digest}")).count() != 2 {
        iptables(&["--noflush"], Some(&ruleset(policy, &nameservers))).await?;
        changed = true;
    }
    for (from, jump) in jumps(bridge) {
        if iptables(&[&["-C", from], jump.as_slice()].concat(), None).await.is_err() {
            iptables(&[&["-I", from, "1"], jump.as_slice()].concat(), None).await?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Both chains as `iptables -S` prints them (empty where missing).
pub async fn listing() -> String {
    let mut text = String::new();
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        text += &iptables(&["-S", chain], None).await.unwrap_or_else(|_| format!("(no chain {chain})\n"));
    }
    text
}

/// Removes ocaas's jumps and chains; returns whether there was anything to remove.
pub async fn remove(bridge: &str) -> RuntimeResult<bool> {
    let mut removed = false;
    for (from, jump) in jumps(bridge) {
        // Every copy of the jump (a crashed run may have left more than one).
        for _ in 0..16 {
            if iptables(&[&["-D", from], jump.as_slice()].concat(), None).await.is_err() {
                break;
            }
            removed = true;
        }
    }
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        if iptables(&["-F", chain], None).await.is_ok() {
            iptables(&["-X", chain], None).await?;
            removed = true;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_entries_parse_with_and_without_a_port_and_refuse_garbage() {
        assert_eq!("10.20.0.0/16".parse(), Ok(AllowRule { net: Ipv4Addr::new(10, 20, 0, 0), prefix: 16, port: None }));
        assert_eq!("10.0.0.5:5432".parse(), Ok(AllowRule { net: Ipv4Addr::new(10, 0, 0, 5), prefix: 32, port: Some(5432) }));
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "example.com", "10.0.0.1:0", "10.0.0.1:http", "fd00::/8"] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn public_mode_rejects_private_ranges_after_replies_dns_and_the_allowlist() {
        let policy = EgressPolicy { mode: EgressMode::Public, allow: vec!["10.9.0.0/16:443".parse().unwrap()], host_ports: vec![(18790, 18790)] };
        let rules = ruleset(&policy, &[Ipv4Addr::new(10, 0, 0, 2)]);
        let forward: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A OCAAS-EGRESS")).collect();
        let position = |needle: &str| forward.iter().position(|l| l.contains(needle)).unwrap();
        assert!(position("ESTABLISHED") < position("-d 10.0.0.2/32 -p udp"));
        assert!(position("-d 10.9.0.0/16 -p tcp -m tcp --dport 443 -j RETURN") < position("-d 10.0.0.0/8 -j REJECT"));
        assert!(forward.iter().any(|l| l.ends_with("-d 169.254.0.0/16 -j REJECT")));
        assert!(!forward.iter().any(|l| l.ends_with("-A OCAAS-EGRESS -j REJECT")), "public traffic passes");
        let input: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A OCAAS-HOST")).collect();
        assert_eq!(input.last(), Some(&"-A OCAAS-HOST -j REJECT"));
        assert!(input.contains(&"-A OCAAS-HOST -p tcp -m tcp --dport 18790 -j RETURN"));
    }

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "203.0.113.7", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn none_mode_rejects_everything_not_allowed() {
        let rules = ruleset(&EgressPolicy { mode: EgressMode::None, ..Default::default() }, &[]);
        assert!(rules.lines().any(|l| l == "-A OCAAS-EGRESS -j REJECT"));
    }
}
