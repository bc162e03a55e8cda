//! Where webhooks may go, against server-side request forgery: `https://` URLs whose host
//! resolves to public addresses only, checked when an endpoint is created and again at every
//! delivery by [`CheckedResolver`], the resolver the delivery client connects through, so a name
//! that later resolves to an internal address (DNS rebinding) is refused at connection time and
//! the connection goes to the very addresses checked. With `allow_loopback` (tests, local
//! development) `http://` and `https://` URLs on loopback (`127.0.0.1`, `::1`, `localhost`) are
//! allowed as well; nothing else private ever is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Longest URL accepted: browsers and proxies handle 2,000 characters everywhere.
const MAX_URL_LENGTH: usize = 2000;

/// Why a URL cannot receive webhooks; the message is for the API's client.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UrlError {
    #[error("the URL does not parse: {0}")]
    Malformed(String),
    #[error("the URL is longer than {MAX_URL_LENGTH} characters")]
    TooLong,
    #[error("webhook URLs must be https://")]
    NotHttps,
    #[error("webhook URLs must not carry a user name or password")]
    Credentials,
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
    /// The address is kept for the server's logs, not shown: naming what an internal host name
    /// resolves to would let anyone map the service's private network.
    #[error("the host {host} resolves to an address that is not public")]
    NotPublic { host: String, address: IpAddr },
}

/// Checks what can be checked without the network: the syntax, the scheme, no credentials, and
/// an IP-literal host's address. A domain's addresses are checked by [`resolve`].
pub fn check_url(text: &str, allow_loopback: bool) -> Result<Url, UrlError> {
    if text.len() > MAX_URL_LENGTH {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(text).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let loopback_host = match url.host() {
        None => return Err(UrlError::Malformed("the URL has no host".into())),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && loopback_host => {}
        _ => return Err(UrlError::NotHttps),
    }
    if let Some(ip) = literal_ip(&url) {
        check_address(&host_text(&url), ip, allow_loopback)?;
    }
    Ok(url)
}

/// The addresses `url`'s host resolves to, every one of them allowed (an IP literal is its own
/// address). One address that is not allowed refuses the host: a name must not mix public and
/// internal addresses.
pub async fn resolve(url: &Url, allow_loopback: bool) -> Result<Vec<IpAddr>, UrlError> {
    match literal_ip(url) {
        Some(ip) => check_address(&host_text(url), ip, allow_loopback).map(|()| vec![ip]),
        None => lookup(&host_text(url), allow_loopback).await,
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Domain(_) => None,
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
    }
}

fn host_text(url: &Url) -> String {
    url.host_str().unwrap_or_default().to_string()
}

fn check_address(host: &str, address: IpAddr, allow_loopback: bool) -> Result<(), UrlError> {
    if is_public(address) || (allow_loopback && address.is_loopback()) {
        Ok(())
    } else {
        Err(UrlError::NotPublic { host: host.to_string(), address })
    }
}

async fn lookup(host: &str, allow_loopback: bool) -> Result<Vec<IpAddr>, UrlError> {
    let found = tokio::net::lookup_host((host, 0)).await.map_err(|_| UrlError::Unresolvable(host.to_string()))?;
    let addresses: Vec<IpAddr> = found.map(|a| a.ip()).collect();
    if addresses.is_empty() {
        return Err(UrlError::Unresolvable(host.to_string()));
    }
    for address in &addresses {
        check_address(host, *address, allow_loopback)?;
    }
    Ok(addresses)
}

/// The delivery client's resolver: the system's, then the address check, so what reqwest
/// connects to is exactly what was checked. (IP-literal hosts never reach a resolver: the
/// delivery checks them with [`check_url`] before sending.)
pub struct CheckedResolver {
    pub allow_loopback: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = lookup(&host, allow_loopback).await?;
            // Port 0: reqwest puts the URL's port in.
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `address` is reachable on the public Internet: not loopback, private, link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, reserved or unspecified, in either
/// family; IPv4 addresses inside IPv6 (mapped, NAT64) are judged as the IPv4 address.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let special = a == 0 // "this network"
        || a == 10 // private (RFC 1918)
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space, CGNAT (RFC 6598)
        || (a == 169 && b == 254) // link-local, cloud metadata services
        || (a == 172 && (16..32).contains(&b)) // private (RFC 1918)
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF protocol assignments, TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private (RFC 1918)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = address.segments();
    // NAT64's well-known prefix reaches the IPv4 address it carries.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = address.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Only global unicast (2000::/3) is routed on the Internet: this leaves out unspecified,
    // loopback, unique-local (fc00::/7), link-local (fe80::/10), multicast and the rest.
    let global_unicast = s[0] & 0xe000 == 0x2000;
    // 2001::/23: IETF protocol assignments (Teredo among them); 2001:db8::/32: documentation.
    let special = (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8))
        || s[0] == 0x2002 // 6to4, which may carry any IPv4 address
        || (s[0] == 0x3fff && s[1] < 0x1000); // documentation (RFC 9637)
    global_unicast && !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.2.10",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(!is_public(ip(text)), "{text} is not public");
        }
    }

    #[test]
    fn public_addresses_are() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(text)), "{text} is public");
        }
    }

    #[test]
    fn urls_must_be_https_and_public() {
        assert_eq!(check_url("http://example.com/hook", false).err(), Some(UrlError::NotHttps));
        assert_eq!(check_url("http://example.com/hook", true).err(), Some(UrlError::NotHttps));
        assert_eq!(check_url("ftp://example.com/hook", false).err(), Some(UrlError::NotHttps));
        assert!(matches!(check_url("https://10.0.0.1/x", false), Err(UrlError::NotPublic { .. })));
        assert!(matches!(check_url("https://10.0.0.1/x", true), Err(UrlError::NotPublic { .. })));
        assert!(matches!(check_url("https://[fd00::1]/x", false), Err(UrlError::NotPublic { .. })));
        assert!(matches!(check_url("https://127.0.0.1/x", false), Err(UrlError::NotPublic { .. })));
        assert!(matches!(check_url("https://169.254.169.254/latest", false), Err(UrlError::NotPublic { .. })));
        assert_eq!(check_url("https://user:pw@example.com/", false).err(), Some(UrlError::Credentials));
        assert!(matches!(check_url("not a url", false), Err(UrlError::Malformed(_))));
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("https://93.184.215.14/hook", false).is_ok());
    }

    #[test]
    fn loopback_only_when_allowed() {
        assert_eq!(check_url("http://127.0.0.1:8080/hook", false).err(), Some(UrlError::NotHttps));
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("http://localhost:8080/hook", true).is_ok());
        assert!(check_url("http://[::1]:8080/hook", true).is_ok());
        assert!(matches!(check_url("https://127.0.0.1/", false), Err(UrlError::NotPublic { .. })));
        assert!(check_url("https://127.0.0.1/", true).is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        // `localhost` resolves from the hosts file, without a DNS server.
        let url = check_url("https://localhost/hook", false).ok();
        let refused = match &url {
            Some(url) => resolve(url, false).await,
            None => Ok(Vec::new()),
        };
        assert!(matches!(refused, Err(UrlError::NotPublic { .. })), "{refused:?}");
        let allowed = match &url {
            Some(url) => resolve(url, true).await,
            None => Ok(Vec::new()),
        };
        assert!(allowed.is_ok_and(|addresses| !addresses.is_empty() && addresses.iter().all(IpAddr::is_loopback)));
    }
}
