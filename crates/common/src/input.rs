//! Domain values parsed at the edge, so handlers never see an unchecked number or id.

use crate::error::{Error, Result};

/// Longest id we accept; ids are opaque, but an unbounded key is an easy way to abuse Redis.
pub const MAX_ID_LEN: usize = 256;

/// A non-negative amount of money or stock that fits in an `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    pub fn parse(text: &str, field: &str) -> Result<Self> {
        parse_i64(text, field).map(Self)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A quantity of an item in an order: at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity(i64);

impl Quantity {
    pub fn parse(text: &str) -> Result<Self> {
        match parse_i64(text, "quantity")? {
            0 => Err(Error::BadInput("quantity must be at least 1".into())),
            q => Ok(Self(q)),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// How many records a `batch_init` creates. Bounded so one request cannot exhaust memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count(u64);

impl Count {
    pub const MAX: u64 = 10_000_000;

    pub fn parse(text: &str, field: &str) -> Result<Self> {
        let n = parse_i64(text, field)? as u64;
        if n > Self::MAX {
            return Err(Error::BadInput(format!(
                "{field} must be at most {}",
                Self::MAX
            )));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// Checks an opaque id taken from a path.
pub fn id(text: &str, field: &str) -> Result<String> {
    if text.is_empty() || text.len() > MAX_ID_LEN || text.chars().any(char::is_control) {
        return Err(Error::BadInput(format!(
            "{field} must be 1 to {MAX_ID_LEN} printable characters"
        )));
    }
    Ok(text.to_string())
}

fn parse_i64(text: &str, field: &str) -> Result<i64> {
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !all_digits {
        return Err(Error::BadInput(format!(
            "{field} must be a non-negative integer, got {:?}",
            truncate(text)
        )));
    }
    text.parse::<i64>().map_err(|_| {
        Error::BadInput(format!(
            "{field} is too large: it must fit in a signed 64-bit integer"
        ))
    })
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(32) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_accept_only_non_negative_i64() {
        assert_eq!(Amount::parse("0", "a").unwrap().get(), 0);
        assert_eq!(
            Amount::parse("9223372036854775807", "a").unwrap().get(),
            i64::MAX
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "1e3",
            "+3",
            " 1",
            "abc",
            "9223372036854775808",
            "٣",
        ] {
            assert!(Amount::parse(bad, "a").is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn quantities_start_at_one() {
        assert!(Quantity::parse("0").is_err());
        assert_eq!(Quantity::parse("3").unwrap().get(), 3);
    }

    #[test]
    fn counts_are_bounded() {
        assert!(Count::parse("10000001", "n").is_err());
        assert_eq!(Count::parse("100000", "n").unwrap().get(), 100_000);
    }

    #[test]
    fn ids_are_checked() {
        assert!(id("", "id").is_err());
        assert!(id(&"x".repeat(MAX_ID_LEN + 1), "id").is_err());
        assert!(id("a\nb", "id").is_err());
        assert_eq!(id("0", "id").unwrap(), "0");
    }
}
