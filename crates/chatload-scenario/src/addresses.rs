//! `[target] source_addresses`: the list of local addresses connections may come from, as
//! the scenario writes it (a range within one /24, or a comma-separated list). Owns reading
//! the text; binding to the addresses is `transport::source`'s.

use std::net::IpAddr;

/// Parses "127.0.0.1-127.0.0.50" (a range within one /24) or "10.0.0.5, 10.0.0.6".
pub fn parse_list(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (a.trim(), b.trim());
            let (Ok(IpAddr::V4(lo)), Ok(IpAddr::V4(hi))) = (a.parse(), b.parse()) else {
                return Err(format!("`{part}` is not a range of IPv4 addresses"));
            };
            let (lo, hi) = (lo.octets(), hi.octets());
            if lo[..3] != hi[..3] || lo[3] > hi[3] {
                return Err(format!(
                    "`{part}` must stay within one /24 and go upwards, e.g. 127.0.0.1-127.0.0.50"
                ));
            }
            out.extend((lo[3]..=hi[3]).map(|d| IpAddr::from([lo[0], lo[1], lo[2], d])));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("`{part}` is not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_parse() {
        assert_eq!(parse_list("127.0.0.1-127.0.0.3").unwrap().len(), 3);
        assert_eq!(
            parse_list("10.0.0.5, ::1").unwrap(),
            vec![
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(parse_list("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_list("127.0.0.1-127.0.1.1").is_err());
        assert!(parse_list("nonsense").is_err());
    }
}
