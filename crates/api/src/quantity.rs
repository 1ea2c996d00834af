//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as integers: CPU in
//! millicores, everything else in base units (bytes), rounded up like upstream's `MilliValue`
//! and `Value`.

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

fn split(s: &str) -> Result<(f64, f64), QuantityError> {
    let err = || QuantityError(s.to_string());
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| err())?;
            10f64.powi(e)
        }
        _ => return Err(err()),
    };
    Ok((n, mult))
}

/// The value in thousandths (CPU millicores), rounded up.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    let (n, mult) = split(s)?;
    Ok((n * mult * 1000.0).ceil() as i64)
}

/// The value in base units (bytes for memory), rounded up.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    let (n, mult) = split(s)?;
    Ok((n * mult).ceil() as i64)
}

/// Format bytes the way a node reports capacity (`16331284Ki`).
pub fn format_kibibytes(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory_forms() {
        assert_eq!(milli_value("100m").unwrap(), 100);
        assert_eq!(milli_value("1.5").unwrap(), 1500);
        assert_eq!(milli_value("2").unwrap(), 2000);
        assert_eq!(value("128Mi").unwrap(), 128 * 1024 * 1024);
        assert_eq!(value("1G").unwrap(), 1_000_000_000);
        assert_eq!(value("2e3").unwrap(), 2000);
        assert_eq!(value("1k").unwrap(), 1000);
        assert!(value("ten").is_err());
        assert!(value("1Qi").is_err());
        assert!(value("").is_err());
    }
}
