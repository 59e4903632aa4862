//! The query string of a raw request, decoded.

use std::collections::BTreeMap;

/// Each parameter's first value, decoded (`+` is a space, `%XX` a byte;
/// bytes that are not UTF-8 become U+FFFD).
pub(crate) fn query_params(uri: &http::Uri) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
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
        assert_eq!(params["bad"], "%ZZ", "a broken escape stays as written");
    }
}
