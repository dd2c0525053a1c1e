//! Human output for the admin commands: aligned tables, and text from outside (bodies, headers,
//! a destination's error) made safe for a terminal.

/// Control characters (an escape sequence in a webhook body could rewrite the operator's
/// terminal) and characters that change how text reads without showing themselves (see
/// [`is_disguising`]) become U+FFFD; newlines and tabs stay only when `multiline`.
pub fn clean_text(s: &str, multiline: bool) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' if multiline => c,
            c if c.is_control() || is_disguising(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Invisible characters that can make text read as something else: the bidirectional controls
/// (U+202E turns `evt_1\u{202E}txt.exe` around, the "Trojan Source" trick, CVE-2021-42574), the
/// rest of Unicode's format characters (category Cf: zero-width spaces and joiners, the BOM, tag
/// characters that smuggle hidden ASCII), line and paragraph separators that break a table row,
/// and the blank Hangul fillers that pass for letters in names.
fn is_disguising(c: char) -> bool {
    matches!(
        c,
        // Cf, Unicode 15.
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
            // Zl, Zp.
            | '\u{2028}'..='\u{2029}'
            // Blank letters (Lo).
            | '\u{115F}'..='\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
    )
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

    #[test]
    fn bidi_controls_and_invisible_format_characters_are_neutralised() {
        let bidi = ['\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'];
        let isolates = ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];
        let invisible =
            ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{E0041}', '\u{2028}'];
        for c in bidi.iter().chain(&isolates).chain(&invisible) {
            assert_eq!(clean(&format!("a{c}b")), "a\u{FFFD}b", "U+{:04X}", *c as u32);
            assert_eq!(clean_text(&format!("a{c}\nb"), true), "a\u{FFFD}\nb", "U+{:04X}", *c as u32);
        }
        // The Trojan Source example: what the terminal would show reversed is shown as sent.
        assert_eq!(clean("evt_1\u{202E}txt.exe"), "evt_1\u{FFFD}txt.exe");
        // Visible text of every script stays as it is, combining marks and emoji too.
        for fine in ["Grüße", "日本語", "مرحبا", "שלום", "e\u{0301}", "👍🏽", "→ ✓"] {
            assert_eq!(clean(fine), fine);
        }
    }
}
