//! Address ranges: an IPv4 or IPv6 address with an optional prefix length, and the membership
//! test — for flags (`OCAAS_TRUSTED_PROXIES`) and the egress policy's blocked ranges alike. A
//! foundation module: no ocaas imports, so both `config` and `runtime` may use it.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => (u128::from(u32::from(net)), u128::from(u32::from(ip)), 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => (u128::from(net), u128::from(ip), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

/// `10.0.0.0/8`, `::1/128` or a plain address (the whole length).
pub fn parse_net(raw: &str) -> Result<IpNet, String> {
    let bad = || format!("`{raw}` is not an address or CIDR (like 10.0.0.0/8 or ::1/128)");
    let (addr, prefix) = raw.trim().split_once('/').map_or((raw.trim(), None), |(a, p)| (a, Some(p)));
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        None => max,
    };
    Ok(IpNet { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_their_addresses_and_refuse_garbage() {
        let net = parse_net("10.0.0.0/8").unwrap();
        assert!(net.contains("10.9.8.7".parse().unwrap()) && net.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()) && !net.contains("::1".parse().unwrap()));
        assert!(parse_net("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(parse_net("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::1/129", ""] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
    }
}
