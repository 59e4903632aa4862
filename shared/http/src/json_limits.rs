//! A nesting limit checked before any JSON parser sees the body.

/// Deepest nesting of objects and arrays a request body may have. Matrix
/// events are shallow; deep nesting only serves to exhaust parsers.
const MAX_DEPTH: usize = 64;

/// `Err` when the body nests deeper than the limit. Strings are skipped, so
/// brackets inside them do not count.
pub fn check_json_depth(body: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("JSON nests deeper than {MAX_DEPTH} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_passes_deep_fails_strings_ignored() {
        assert!(check_json_depth(br#"{"a":[1,{"b":2}]}"#).is_ok());
        assert!(check_json_depth(&[b'['; 65]).is_err());
        let quoted = format!(r#"{{"a":"{}"}}"#, "[".repeat(100));
        assert!(check_json_depth(quoted.as_bytes()).is_ok());
    }
}
