//! Text from a scenario or a target made safe to place in the report formats: one escaper per
//! format, used by every writer of that format (report.html and its SVG charts, junit.xml,
//! capacity.html, summary.md). Owns escaping, not layout.

/// For HTML, SVG and XML: markup characters as entities; control characters XML 1.0 cannot
/// carry are dropped (line breaks and tabs stay).
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// For Markdown text and table cells: what Markdown (or a viewer that renders HTML inside
/// it) would read as syntax is escaped, and a line break becomes a space, so a target's error
/// text can neither split a table cell nor add markup.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            // `_` stays: inside a word (direct_chat, http_5xx) GitHub's Markdown reads it as
            // a letter, and names are full of it.
            '\\' | '`' | '*' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_leaves_no_markup_and_no_character_xml_cannot_hold() {
        assert_eq!(
            xml("<a href=\"x\">Tom & 'Jerry'</a>\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;"
        );
        assert_eq!(xml("line\nnext\ttab"), "line\nnext\ttab");
    }

    #[test]
    fn markdown_keeps_a_cell_one_cell_and_adds_no_markup() {
        assert_eq!(
            markdown("a|b\n**x** <script> `c` [l](u)"),
            "a\\|b \\*\\*x\\*\\* &lt;script&gt; \\`c\\` \\[l\\](u)"
        );
        assert_eq!(
            markdown("in direct_chat: http_5xx 3"),
            "in direct_chat: http_5xx 3"
        );
    }
}
