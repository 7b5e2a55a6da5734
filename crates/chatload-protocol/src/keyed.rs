//! Keyed randomness: decisions that must come out the same for the same seed no matter when
//! or on which thread they are made (which users a storm drops, whether a recipient reads a
//! message and after how long, which API request gets an injected fault).

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// splitmix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether reconnect storm `pattern` drops `user` (the same users for the same seed, whether
/// the client or the server decides).
pub fn storm_hits(seed: u64, pattern: u16, user: u32, fraction: f64) -> bool {
    let h = mix(seed ^ ((pattern as u64) << 40) ^ user as u64);
    (h as f64 / u64::MAX as f64) < fraction
}

/// A uniform number in [0, 1) fixed by its keys.
pub fn unit(seed: u64, a: u64, b: u64) -> f64 {
    let h = mix(mix(seed ^ a.rotate_left(17)) ^ b);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A generator fixed by its keys, for drawing several values about one thing.
pub fn rng(seed: u64, a: u64, b: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(mix(mix(seed ^ a.rotate_left(29)) ^ b.rotate_left(3)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyed_units_are_uniform_and_stable() {
        let n = 100_000u64;
        let below: u64 = (0..n).filter(|i| super::unit(7, *i, 3) < 0.25).count() as u64;
        assert!((below as f64 / n as f64 - 0.25).abs() < 0.01);
        assert_eq!(super::unit(7, 1, 2), super::unit(7, 1, 2));
        assert_ne!(super::unit(7, 1, 2), super::unit(8, 1, 2));
    }
}
