//! The query string of a raw request, decoded.

use std::collections::BTreeMap;

/// Each parameter's first value; `+` is a space, `%XX` a byte. Pairs that
/// do not decode to UTF-8 are left out.
pub(crate) fn query_params(uri: &http::Uri) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for pair in uri.query().unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(name), Some(value)) = (decode(name), decode(value)) {
            params.entry(name).or_insert(value);
        }
    }
    params
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_the_first_value_wins() {
        let uri: http::Uri = "/x?filename=caf%C3%A9+menu.pdf&width=32&width=64&flag&bad=%ZZ"
            .parse()
            .expect("uri");
        let params = query_params(&uri);
        assert_eq!(params["filename"], "café menu.pdf");
        assert_eq!(params["width"], "32");
        assert_eq!(params["flag"], "");
        assert!(!params.contains_key("bad"));
    }
}
