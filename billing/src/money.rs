//! Amounts in yen as exact integers: no floating point anywhere in billing.

use std::fmt;
use std::iter::Sum;

use serde::{Deserialize, Serialize};

/// Largest amount a fee-schedule entry may name (one billion yen); guards against a misplaced
/// digit, and keeps every month's total far inside `u64`.
pub const MAX_FEE: Yen = Yen(1_000_000_000);

/// A non-negative amount of Japanese yen. Deserialises only from a JSON integer, so `1000.5`,
/// `-1` or `"1000"` in a data file are rejected.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Yen(u64);

impl Yen {
    pub const ZERO: Yen = Yen(0);

    pub const fn new(amount: u64) -> Self {
        Self(amount)
    }

    pub const fn amount(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Yen) -> Option<Yen> {
        self.0.checked_add(other.0).map(Yen)
    }
}

impl Sum for Yen {
    /// Fees are capped at [`MAX_FEE`] when loaded, so an overflow would need more than
    /// 18 billion lines in one sum: far beyond any month's vaccinations held in memory.
    fn sum<I: Iterator<Item = Yen>>(iter: I) -> Yen {
        iter.fold(Yen::ZERO, |total, amount| {
            total
                .checked_add(amount)
                .expect("fees are capped at load, so a month's total fits in u64")
        })
    }
}

impl fmt::Display for Yen {
    /// `12,300円`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        write!(f, "{out}円")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yen_reads_only_json_integers() {
        let cases = [
            ("10000", Some(10_000)),
            ("0", Some(0)),
            ("10000.0", None),
            ("10000.5", None),
            ("-1", None),
            ("\"10000\"", None),
            ("1e4", None),
        ];
        for (text, expected) in cases {
            let got = serde_json::from_str::<Yen>(text).ok().map(Yen::amount);
            assert_eq!(got, expected, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&Yen::new(10_500)).expect("json"),
            "10500"
        );
    }

    #[test]
    fn yen_sums_and_displays_exactly() {
        let total: Yen = [10_000, 10_500, 5_600].into_iter().map(Yen::new).sum();
        assert_eq!(total, Yen::new(26_100));
        let cases = [
            (0, "0円"),
            (999, "999円"),
            (1_000, "1,000円"),
            (129_400, "129,400円"),
            (1_000_000, "1,000,000円"),
        ];
        for (amount, shown) in cases {
            assert_eq!(Yen::new(amount).to_string(), shown);
        }
        assert_eq!(Yen::new(u64::MAX).checked_add(Yen::new(1)), None);
    }
}
