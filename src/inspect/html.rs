//! `inspect --html FILE`: the inspect report as one self-contained page.
//!
//! The page is `html/page.html` with `html/page.css` and `html/page.js` inlined and the
//! report embedded as JSON in a `<script type="application/json" id="report">` element,
//! which the page's script reads and draws (plain DOM and SVG, no library). Nothing is
//! fetched: no CDN, no font, no image by address; a Content-Security-Policy in the page
//! forbids it, so the file opens offline from a file manager or a browser.
//!
//! The JSON is the document `inspect --format json` prints (schema
//! `redis-migration-inspect/1`); the page tolerates missing parts and draws an empty report.

use serde_json::Value;

/// The page around the data: `{{STYLE}}`, `{{SCRIPT}}` and `{{DATA}}` are filled in.
const PAGE: &str = include_str!("html/page.html");
const STYLE: &str = include_str!("html/page.css");
const SCRIPT: &str = include_str!("html/page.js");

/// Renders `report` (the inspect JSON document) as a self-contained HTML page.
pub fn render(report: &Value) -> String {
    let data = embed_json(report);
    let mut out = String::with_capacity(PAGE.len() + STYLE.len() + SCRIPT.len() + data.len());
    // Each placeholder of the template is replaced once; what is inserted is never scanned
    // again, so a key that reads `{{SCRIPT}}` stays text.
    let mut rest = PAGE;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match &after[..end] {
            "STYLE" => out.push_str(STYLE),
            "SCRIPT" => out.push_str(SCRIPT),
            "DATA" => out.push_str(&data),
            other => {
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The report as JSON text that is safe inside a `<script>` element: `<`, `>` and `&`
/// (which appear only inside JSON strings) become `\u003c`, `\u003e`, `\u0026`, so no
/// `</script>` or `<!--` can end or change the element; the text still parses to the same
/// value. U+2028 and U+2029 are escaped too, for readers that take the text as JavaScript.
fn embed_json(report: &Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings); null if it ever did.
    let text = serde_json::to_string(report).unwrap_or_else(|_| String::from("null"));
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The text of the `<script type="application/json">` element of a page.
    fn embedded(page: &str) -> &str {
        let open = r#"<script type="application/json" id="report">"#;
        let start = page.find(open).map(|i| i + open.len()).unwrap_or(0);
        let len = page[start..].find("</script>").unwrap_or(0);
        &page[start..start + len]
    }

    #[test]
    fn a_key_cannot_close_the_data_element() {
        let evil = "</script><script>alert(1)</script><!--";
        let report = json!({"top": [{"db": 0, "key": evil, "memory_bytes": 1}], "files": [{"name": "</SCRIPT>&amp;"}]});
        let page = render(&report);
        // The data element ends at the first `</script>` after it; its text is the whole
        // JSON document, and it reads back as the same value.
        let data = embedded(&page);
        assert!(!data.contains('<') && !data.contains('>'), "{data}");
        let back: Value = serde_json::from_str(data).unwrap();
        assert_eq!(back, report);
        assert!(!page.contains("alert(1)</script>"));
        assert!(!page.to_ascii_lowercase().contains("</script><script>alert"));
        // The script elements are the data one and the page's own script, nothing more.
        assert_eq!(page.matches("<script").count(), 2);
    }

    #[test]
    fn placeholders_in_the_data_stay_text() {
        let report = json!({"top": [{"key": "{{SCRIPT}}{{DATA}}{{STYLE}}"}]});
        let page = render(&report);
        assert!(embedded(&page).contains("{{SCRIPT}}{{DATA}}{{STYLE}}"));
        let braces = |s: &str| s.matches("{{").count();
        assert_eq!(braces(&page), 3 + braces(SCRIPT) + braces(STYLE));
        assert!(page.contains(SCRIPT) && page.contains(STYLE));
    }

    #[test]
    fn nothing_is_fetched_from_outside() {
        let page = render(&json!({"files": [{"name": "dump.rdb"}]}));
        let lower = page.to_ascii_lowercase();
        for needle in ["http://", "https://", "ftp://", "src=", "href=", "url(", "@import", "//cdn", "@font-face"] {
            assert!(!lower.contains(needle), "the page holds {needle:?}");
        }
        assert!(lower.contains("content-security-policy") && lower.contains("default-src 'none'"));
    }

    #[test]
    fn the_parts_are_whole_and_closed() {
        // The inlined files cannot end their own elements early.
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        let page = render(&Value::Null);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</html>"));
        assert_eq!(embedded(&page), "null");
        assert!(!page.contains("{{STYLE}}") && !page.contains("{{SCRIPT}}") && !page.contains("{{DATA}}"));
    }

    #[test]
    fn non_ascii_text_survives() {
        let report = json!({"ttl": {"bins": [{"label": "≥ 30 days"}]}, "k": "a\u{2028}b"});
        let page = render(&report);
        let data = embedded(&page);
        assert!(data.contains("≥ 30 days") && data.contains("\\u2028"));
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), report);
    }
}
