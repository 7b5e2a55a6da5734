//! Numbers written for people: thousands separators and durations with a unit. A leaf that
//! the console, Markdown and HTML reports, `plan`, `capacity` and the live progress line all
//! use, so none of them borrows another's formatting. Owns the look of a number, not its
//! meaning.

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in µs, shown with a unit a person reads at a glance.
pub fn format_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_every_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn durations_take_the_unit_a_person_reads() {
        assert_eq!(format_us(999.0), "999µs");
        assert_eq!(format_us(1_500.0), "1.50ms");
        assert_eq!(format_us(2_500_000.0), "2.50s");
    }
}
