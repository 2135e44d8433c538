//! Kubernetes quantities in the canonical form the API server writes them back in (`0.5` is
//! stored as `500m`, `0.25Gi` as `256Mi`), so that an object built from what a person wrote
//! compares equal to the one read back, and an unchanged object costs no write.

/// The suffixes of the decimal format and their powers of ten.
const DECIMAL: [(&str, u32); 10] = [
    ("n", 0),
    ("u", 3),
    ("m", 6),
    ("", 9),
    ("k", 12),
    ("M", 15),
    ("G", 18),
    ("T", 21),
    ("P", 24),
    ("E", 27),
];

/// The suffixes of the binary format, by power of 1024.
const BINARY: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// `quantity` as the API server writes it back, or `None` for what this does not handle
/// (exponent forms such as `1e3`, or no quantity at all), which is best left as written.
pub fn canonical(quantity: &str) -> Option<String> {
    let (negative, rest) = match quantity.as_bytes().first()? {
        b'-' => (true, &quantity[1..]),
        b'+' => (false, &quantity[1..]),
        _ => (false, quantity),
    };
    let number_end = rest
        .find(|character: char| !(character.is_ascii_digit() || character == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || whole.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = u32::try_from(fraction.len()).ok()?;
    // The value in billionths (the finest the API server keeps), rounded up as it does.
    let (nanos, binary) =
        if let Some(power) = BINARY[1..].iter().position(|binary| *binary == suffix) {
            let factor = 1024_i128.checked_pow(u32::try_from(power + 1).ok()?)?;
            (scaled(digits.checked_mul(factor)?, 9, scale)?, true)
        } else {
            let (_, power) = DECIMAL.iter().find(|(decimal, _)| *decimal == suffix)?;
            (scaled(digits, *power, scale)?, false)
        };
    if nanos > i128::from(i64::MAX) * 1_000_000_000 {
        return None;
    }
    let sign = if negative && nanos != 0 { "-" } else { "" };
    if nanos == 0 {
        return Some("0".to_owned());
    }
    // Binary when asked for, unless it is under 1024 or not whole.
    if binary && nanos >= 1024 * 1_000_000_000 && nanos % 1_000_000_000 == 0 {
        let mut amount = nanos / 1_000_000_000;
        let mut power = 0;
        while power < BINARY.len() - 1 && amount % 1024 == 0 {
            amount /= 1024;
            power += 1;
        }
        return Some(format!("{sign}{amount}{}", BINARY[power]));
    }
    let mut amount = nanos;
    let mut index = 0;
    while index < DECIMAL.len() - 1 && amount % 1000 == 0 {
        amount /= 1000;
        index += 1;
    }
    if index == DECIMAL.len() - 1 && amount % 1000 == 0 {
        // Past `E` the API server writes an exponent.
        return None;
    }
    Some(format!("{sign}{amount}{}", DECIMAL[index].0))
}

/// `digits` × 10^(`power` − `scale`), rounded up when that is not whole.
fn scaled(digits: i128, power: u32, scale: u32) -> Option<i128> {
    if power >= scale {
        digits.checked_mul(10_i128.checked_pow(power - scale)?)
    } else {
        let divisor = 10_i128.checked_pow(scale - power)?;
        Some((digits + divisor - 1) / divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_the_api_server_writes_them() {
        for (written, stored) in [
            ("0.5", "500m"),
            ("0.1", "100m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1024", "1024"),
            ("1000k", "1M"),
            ("10000000m", "10k"),
            ("0.0001", "100u"),
            ("1.0000000001", "1000000001n"),
            ("0", "0"),
            ("0Mi", "0"),
            ("+2", "2"),
            ("128Mi", "128Mi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("0.25Gi", "256Mi"),
            ("1.5Gi", "1536Mi"),
            ("1.5Ki", "1536"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
            ("64Gi", "64Gi"),
            ("2E", "2E"),
        ] {
            assert_eq!(canonical(written).as_deref(), Some(stored), "{written}");
        }
        for unhandled in [
            "", "1e3", "1.5e3", "Mi", "12 Mi", "1.2.3", "1Xi", ".", "5000E",
        ] {
            assert_eq!(canonical(unhandled), None, "{unhandled:?}");
        }
    }
}
