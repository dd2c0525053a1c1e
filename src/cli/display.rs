//! Human output for the admin commands: aligned tables, and text from outside (bodies, headers,
//! a destination's error) made safe for a terminal.

/// Control characters (an escape sequence in a webhook body could rewrite the operator's
/// terminal) become U+FFFD; newlines and tabs stay only when `multiline`.
pub fn clean_text(s: &str, multiline: bool) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' if multiline => c,
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// [`clean_text`] on one line.
pub fn clean(s: &str) -> String {
    clean_text(s, false)
}

/// Rows as columns padded to the widest cell, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_neutralised_and_tables_align() {
        assert_eq!(clean("a\u{1b}[2Jb\nc"), "a\u{FFFD}[2Jb\u{FFFD}c");
        assert_eq!(clean_text("a\nb\tc\r", true), "a\nb\tc\u{FFFD}");
        let t = table(&["ID", "STATUS"], &[vec!["abc".into(), "dead".into()], vec!["a".into(), "ok".into()]]);
        assert_eq!(t, "ID   STATUS\nabc  dead\na    ok\n");
    }
}
