//! The headers every piece of served media carries: its type, how a browser
//! may show it, and the sandbox that keeps it from running as a page.

use http::{HeaderValue, StatusCode, header};
use myelin_http::MatrixError;

/// The policy the spec recommends for served content.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";

/// Types a browser can only render as what they claim to be, so showing
/// them `inline` cannot run script (the spec's list for inline content).
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

pub(crate) const FALLBACK_CONTENT_TYPE: &str = "application/octet-stream";

/// The type without parameters, lower case: `Text/Plain; charset=x` is `text/plain`.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub(crate) fn is_inline_safe(content_type: &str) -> bool {
    INLINE_TYPES.contains(&essence(content_type).as_str())
}

/// `inline` for the safe types and `attachment` for the rest, with the
/// file name as RFC 6266 has it: quoted when it is plain printable ASCII,
/// else percent-encoded UTF-8 in `filename*`.
pub(crate) fn content_disposition(content_type: &str, file_name: Option<&str>) -> String {
    let disposition = if is_inline_safe(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match file_name.filter(|name| !name.is_empty()) {
        None => disposition.to_owned(),
        Some(name) if name.bytes().all(is_plain_quotable) => {
            format!("{disposition}; filename=\"{name}\"")
        }
        Some(name) => format!("{disposition}; filename*=utf-8''{}", percent_encode(name)),
    }
}

/// Printable ASCII that needs no escaping inside a quoted string.
fn is_plain_quotable(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// RFC 5987 `value-chars`: attr-char as is, every other byte as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The type media is served as: the stored one, unless there is none or
/// it is no valid header value; then plain bytes.
pub(crate) fn servable_content_type(stored: Option<&str>) -> &str {
    stored
        .filter(|value| HeaderValue::from_str(value).is_ok())
        .unwrap_or(FALLBACK_CONTENT_TYPE)
}

/// A 200 carrying media (whole or streamed) and its headers.
pub(crate) fn media_response<B>(
    body: B,
    content_type: &str,
    disposition: &str,
) -> Result<http::Response<B>, MatrixError> {
    let header_value = |value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| MatrixError::internal("Stored media metadata is not a valid header"))
    };
    let content_type = header_value(servable_content_type(Some(content_type)))?;
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_DISPOSITION, header_value(disposition)?);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn safe_types_are_inline_and_others_attachments() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("Text/Plain; charset=utf-8", Some("notes.txt")),
            "inline; filename=\"notes.txt\""
        );
        assert_eq!(
            content_disposition("text/html", Some("page.html")),
            "attachment; filename=\"page.html\""
        );
        assert_eq!(
            content_disposition("image/svg+xml", Some("logo.svg")),
            "attachment; filename=\"logo.svg\""
        );
        assert_eq!(
            content_disposition("application/pdf", Some("")),
            "attachment"
        );
    }

    #[test]
    fn names_that_are_not_plain_ascii_use_the_extended_form() {
        assert_eq!(
            content_disposition("application/pdf", Some("résumé 2024.pdf")),
            "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%202024.pdf"
        );
        assert_eq!(
            content_disposition("image/png", Some("say \"hi\".png")),
            "inline; filename*=utf-8''say%20%22hi%22.png"
        );
        assert_eq!(
            content_disposition("image/png", Some("line\nbreak.png")),
            "inline; filename*=utf-8''line%0Abreak.png"
        );
    }

    #[test]
    fn responses_carry_the_sandbox_headers() {
        let response =
            media_response(Bytes::from_static(b"x"), "image/png", "inline").expect("response");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), "image/png");
        assert!(header("content-security-policy").starts_with("sandbox; default-src 'none';"));
        assert_eq!(header("cross-origin-resource-policy"), "cross-origin");
        let odd = media_response(Bytes::new(), "bad\ntype", "inline").expect("response");
        assert_eq!(
            odd.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(FALLBACK_CONTENT_TYPE)
        );
    }
}
