//! What a page says about itself: its OpenGraph tags, with the title and
//! description of plain HTML standing in where it has none.

use reqwest::Url;
use scraper::{Html, Selector};
use serde_json::{Map, Value};

/// Longest description kept, in characters (a preview is a glance).
const MAX_DESCRIPTION_CHARS: usize = 500;

/// The `og:*` properties of an HTML page, plus `og:title` from `<title>`
/// and `og:description` from `<meta name="description">` when the page
/// has none; `og:image` made absolute against `base`.
pub(crate) fn opengraph(html: &str, base: &Url) -> Map<String, Value> {
    let document = Html::parse_document(html);
    let mut found = Map::new();
    for meta in document.select(&selector("meta[property], meta[name]")) {
        let element = meta.value();
        let key = element
            .attr("property")
            .or_else(|| element.attr("name"))
            .unwrap_or_default()
            .trim();
        let Some(content) = element.attr("content") else {
            continue;
        };
        if key.starts_with("og:") && !found.contains_key(key) {
            found.insert(key.to_owned(), Value::String(content.trim().to_owned()));
        }
    }
    if !found.contains_key("og:title")
        && let Some(title) = document.select(&selector("title")).next()
    {
        let text = collapse(&title.text().collect::<String>());
        if !text.is_empty() {
            found.insert("og:title".to_owned(), Value::String(text));
        }
    }
    if !found.contains_key("og:description")
        && let Some(description) = document
            .select(&selector("meta[name=description]"))
            .find_map(|meta| meta.value().attr("content"))
    {
        found.insert(
            "og:description".to_owned(),
            Value::String(description.trim().to_owned()),
        );
    }
    if let Some(Value::String(description)) = found.get_mut("og:description")
        && description.chars().count() > MAX_DESCRIPTION_CHARS
    {
        *description = description.chars().take(MAX_DESCRIPTION_CHARS).collect();
        description.push('…');
    }
    match found
        .get("og:image")
        .and_then(Value::as_str)
        .map(|image| base.join(image))
    {
        Some(Ok(absolute)) if matches!(absolute.scheme(), "http" | "https") => {
            found.insert("og:image".to_owned(), Value::String(absolute.into()));
        }
        _ => {
            found.remove("og:image");
        }
    }
    found
}

fn selector(text: &str) -> Selector {
    // The selectors are literals of this file: a bad one is a bug here.
    Selector::parse(text).unwrap_or_else(|error| panic!("selector {text:?}: {error:?}"))
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://example.org/articles/cats.html").expect("url")
    }

    #[test]
    fn opengraph_tags_win_and_images_become_absolute() {
        let page = r#"<html><head><title>Page title</title>
            <meta property="og:title" content=" Cats ">
            <meta property="og:description" content="All about cats">
            <meta property="og:image" content="/img/cat.png">
            <meta property="og:title" content="Second title">
            <meta name="description" content="plain description">
            </head><body>x</body></html>"#;
        let found = opengraph(page, &base());
        assert_eq!(found["og:title"], "Cats");
        assert_eq!(found["og:description"], "All about cats");
        assert_eq!(found["og:image"], "https://example.org/img/cat.png");
    }

    #[test]
    fn plain_html_stands_in_for_missing_tags() {
        let page = "<html><head><title>\n  A   quiet\tpage </title>\
            <meta name=\"description\" content=\"Nothing much\">\
            <meta property=\"og:image\" content=\"javascript:alert(1)\"></head></html>";
        let found = opengraph(page, &base());
        assert_eq!(found["og:title"], "A quiet page");
        assert_eq!(found["og:description"], "Nothing much");
        assert!(!found.contains_key("og:image"), "only http(s) images");
        let long = format!(
            "<meta name=\"description\" content=\"{}\">",
            "a".repeat(900)
        );
        let found = opengraph(&long, &base());
        let description = found["og:description"].as_str().expect("a description");
        assert_eq!(description.chars().count(), MAX_DESCRIPTION_CHARS + 1);
        assert!(opengraph("not html at all", &base()).is_empty());
    }
}
