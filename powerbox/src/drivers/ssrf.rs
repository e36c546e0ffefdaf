//! The SSRF guard: every address a driver connects to is resolved here, once, and refused if
//! it is inside the server's own network (loopback, private, link-local, ...) unless the
//! administrator allowed that host by name. The caller connects to exactly the returned
//! address, so a second DNS answer cannot swap in another one (DNS rebinding).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::DriverError;

/// What outgoing connections may reach.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// Host → addresses, used instead of DNS (`granary serve --resolve HOST=IP`). Keys are
    /// lower-case host names.
    pub resolve_override: HashMap<String, Vec<IpAddr>>,
    /// Hosts (lower-case) the administrator allows even at non-public addresses.
    pub allow_private_hosts: HashSet<String>,
    /// Certificate authorities (DER) trusted for `https://` origins besides the Mozilla roots
    /// of `webpki-roots`: an internal CA the administrator added, or a test's own.
    pub extra_root_certs: Vec<Vec<u8>>,
}

impl NetPolicy {
    /// Resolves `host` (the override first, else the system resolver — this blocks: call it
    /// through `blocking::unblock` from async code) and returns the first address, refusing a
    /// non-public one unless `host` is allowlisted. An IP literal is checked the same way.
    pub fn resolve_checked(&self, host: &str, port: u16) -> Result<SocketAddr, DriverError> {
        let host_lc = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let addrs: Vec<IpAddr> = if let Some(a) = self.resolve_override.get(&host_lc) {
            a.clone()
        } else if let Ok(ip) = host_lc.parse::<IpAddr>() {
            vec![ip]
        } else {
            (host_lc.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| DriverError::Resolve { host: host_lc.clone(), why: e.to_string() })?
                .map(|s| s.ip())
                .collect()
        };
        let Some(&ip) = addrs.first() else {
            return Err(DriverError::Resolve { host: host_lc, why: "no address".into() });
        };
        if !self.allow_private_hosts.contains(&host_lc) {
            // Every address must be public: refusing only when the first is not would let a
            // resolver's answer order decide.
            for &a in &addrs {
                if let Some(kind) = non_public(a) {
                    return Err(DriverError::PrivateAddress { host: host_lc, addr: a, kind });
                }
            }
        }
        Ok(SocketAddr::new(ip, port))
    }
}

/// The kind of a non-public address, or `None` for an address on the public internet.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            non_public_v6(v6)
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_unspecified() || a == 0 => "unspecified (0.0.0.0/8)",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private (RFC 1918)",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (b & 0xc0) == 64 => "shared (CGNAT 100.64.0.0/10)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        _ if (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113) => "documentation",
        _ if a == 192 && b == 0 && c == 0 => "IETF protocol assignment (192.0.0.0/24)",
        _ if a == 198 && (b & 0xfe) == 18 => "benchmarking (198.18.0.0/15)",
        _ if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if (s[0] & 0xfe00) == 0xfc00 => "unique local (fc00::/7)",
        _ if (s[0] & 0xffc0) == 0xfe80 => "link-local",
        _ if (s[0] & 0xffc0) == 0xfec0 => "site-local (deprecated)",
        _ if ip.is_multicast() => "multicast",
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => "documentation",
        // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) embed an IPv4
        // address a gateway may route to: judge the embedded one.
        _ if s[..6] == [0; 6] => return non_public_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32)),
        _ if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] => {
            return non_public_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32))
        }
        _ if s[0] == 0x0100 && s[1..4] == [0; 3] => "discard-only (100::/64)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        non_public(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for ip in [
            "127.0.0.1", "127.255.0.9", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254",
            "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "224.0.0.1", "239.1.2.3",
            "0.0.0.0", "0.1.2.3", "255.255.255.255", "192.0.2.1", "198.51.100.7", "203.0.113.9",
            "198.18.0.1", "240.0.0.1", "192.0.0.8",
            "::1", "::", "fc00::1", "fdff::1", "fe80::1", "febf::1", "ff02::1", "2001:db8::1",
            "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::127.0.0.1",
            "64:ff9b::a00:1", "100::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1", "8.8.8.8", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1",
            "192.169.0.1", "169.253.0.1", "198.20.0.1", "223.255.255.255", "2606:4700::1111",
            "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::808:808",
        ] {
            assert!(!refused(ip), "{ip} should pass");
        }
    }

    fn policy(host: &str, ips: &[&str], allow: bool) -> NetPolicy {
        let mut p = NetPolicy::default();
        p.resolve_override.insert(host.into(), ips.iter().map(|i| i.parse().unwrap()).collect());
        if allow {
            p.allow_private_hosts.insert(host.into());
        }
        p
    }

    #[test]
    fn override_is_used_and_checked() {
        let p = policy("api.test", &["127.0.0.1"], false);
        let e = p.resolve_checked("API.test", 80).unwrap_err();
        assert!(matches!(e, DriverError::PrivateAddress { .. }), "{e}");
        assert!(e.to_string().contains("Admin → Settings"), "{e}");
        let p = policy("api.test", &["93.184.215.14"], false);
        assert_eq!(p.resolve_checked("api.test", 8080).unwrap(), "93.184.215.14:8080".parse().unwrap());
    }

    #[test]
    fn allowlisted_host_may_be_private_but_only_that_host() {
        let mut p = policy("api.test", &["127.0.0.1"], true);
        assert_eq!(p.resolve_checked("api.test", 81).unwrap(), "127.0.0.1:81".parse().unwrap());
        p.resolve_override.insert("other.test".into(), vec!["127.0.0.1".parse().unwrap()]);
        assert!(p.resolve_checked("other.test", 81).is_err());
    }

    #[test]
    fn one_private_address_among_public_ones_is_refused() {
        let p = policy("mixed.test", &["8.8.8.8", "10.0.0.1"], false);
        assert!(matches!(p.resolve_checked("mixed.test", 80), Err(DriverError::PrivateAddress { .. })));
    }

    #[test]
    fn ip_literals_are_checked_like_names() {
        let p = NetPolicy::default();
        assert!(p.resolve_checked("127.0.0.1", 80).is_err());
        assert!(p.resolve_checked("[::1]", 80).is_err());
        assert_eq!(p.resolve_checked("8.8.8.8", 53).unwrap(), "8.8.8.8:53".parse().unwrap());
    }

    #[test]
    fn localhost_through_the_system_resolver_is_refused() {
        let e = NetPolicy::default().resolve_checked("localhost", 80).unwrap_err();
        assert!(matches!(e, DriverError::PrivateAddress { .. }), "{e}");
    }

    #[test]
    fn unresolvable_host_is_a_resolve_error() {
        let e = NetPolicy::default().resolve_checked("no-such-host.invalid", 80).unwrap_err();
        assert!(matches!(e, DriverError::Resolve { .. }), "{e}");
    }
}
