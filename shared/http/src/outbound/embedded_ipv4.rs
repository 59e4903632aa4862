//! The IPv4 addresses an IPv6 address carries: a translator or tunnel
//! delivers a packet for such an address to the IPv4 host, so a request
//! to `64:ff9b::7f00:1` reaches 127.0.0.1.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Every IPv4 address `ip` embeds, by the standard formats:
/// IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, IPv4-translated
/// `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and its local-use
/// `64:ff9b:1::/48` (read as a /96), 6to4 `2002::/16`, Teredo `2001::/32`
/// (server, and client as the bitwise NOT of the last 32 bits) and ISATAP
/// interface identifiers (`…:0:5efe:a.b.c.d`, `…:200:5efe:a.b.c.d`).
pub(crate) fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let segments = ip.segments();
    let last_32 = ipv4_of(segments[6], segments[7]);
    let mut embedded = Vec::new();
    match segments {
        // `::/96` also holds `::` and `::1`, which stay IPv6's own and are
        // blocked by their own ranges; reading them as 0.0.0.0 and 0.0.0.1
        // only blocks them again.
        [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 1, ..] => embedded.push(last_32),
        [0x2002, high, low, ..] => embedded.push(ipv4_of(high, low)),
        [0x2001, 0, server_high, server_low, ..] => {
            embedded.push(ipv4_of(server_high, server_low));
            embedded.push(!last_32);
        }
        _ => {}
    }
    if matches!(segments[4], 0 | 0x0200) && segments[5] == 0x5efe {
        embedded.push(last_32);
    }
    embedded
}

fn ipv4_of(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded(text: &str) -> Vec<Ipv4Addr> {
        embedded_ipv4(text.parse().expect("an IPv6 address"))
    }

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().expect("an IPv4 address")
    }

    #[test]
    fn each_format_gives_its_ipv4_address() {
        assert_eq!(embedded("::ffff:127.0.0.1"), [v4("127.0.0.1")]);
        assert_eq!(embedded("::10.1.2.3"), [v4("10.1.2.3")]);
        assert_eq!(embedded("::ffff:0:192.168.0.1"), [v4("192.168.0.1")]);
        assert_eq!(embedded("64:ff9b::7f00:1"), [v4("127.0.0.1")]);
        assert_eq!(embedded("64:ff9b:1::a9fe:a9fe"), [v4("169.254.169.254")]);
        assert_eq!(embedded("2002:a00:1::1"), [v4("10.0.0.1")]);
        // Teredo: server 65.54.227.120, client NOT(0x80ff_fffe) = 127.0.0.1.
        assert_eq!(
            embedded("2001:0:4136:e378:8000:63bf:80ff:fffe"),
            [v4("65.54.227.120"), v4("127.0.0.1")]
        );
        assert_eq!(embedded("2001:db8::5efe:a00:1"), [v4("10.0.0.1")]);
        assert_eq!(embedded("fe80::200:5efe:c0a8:1"), [v4("192.168.0.1")]);
    }

    #[test]
    fn plain_ipv6_addresses_embed_nothing() {
        for plain in ["2606:2800:220:1::1", "2a00:1450:4001::200e", "fd00::1"] {
            assert!(embedded(plain).is_empty(), "{plain}");
        }
    }
}
