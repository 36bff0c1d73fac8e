//! String helpers that reproduce the Python string semantics lm-evaluation-harness relies on
//! (`str.strip`, `str.capitalize`, HellaSwag's `preprocess`, WinoGrande's blank split).

/// Python's `str.isspace` for one character: Rust's `char::is_whitespace` (Unicode
/// `White_Space`) plus the four ASCII information separators U+001C..U+001F, which Python
/// also treats as whitespace.
pub fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `s.lstrip()` (no argument).
pub fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(py_is_space)
}

/// Python's `str.capitalize()` (3.8+): the first character in title case, the rest lower-cased.
///
/// Title case equals upper case except for the Latin digraphs (DŽ/Dž/dž, LJ/Lj/lj, NJ/Nj/nj,
/// DZ/Dz/dz), which are mapped to their title-case forms here, and characters whose upper case
/// expands to several characters (e.g. `ß` → `SS`, where Python gives `Ss`); for those this
/// function keeps the first upper-case character and lower-cases the rest of the expansion,
/// which matches Python for `ß` and the `ﬀ`-style ligatures. The rest of the string goes
/// through `str::to_lowercase`, which, like Python, lower-cases a word-final `Σ` to `ς`.
pub fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(s.len());
    match first {
        '\u{01C4}'..='\u{01C6}' => out.push('\u{01C5}'),
        '\u{01C7}'..='\u{01C9}' => out.push('\u{01C8}'),
        '\u{01CA}'..='\u{01CC}' => out.push('\u{01CB}'),
        '\u{01F1}'..='\u{01F3}' => out.push('\u{01F2}'),
        c => {
            let mut upper = c.to_uppercase();
            if let Some(u) = upper.next() {
                out.push(u);
            }
            let tail: String = upper.collect();
            out.push_str(&tail.to_lowercase());
        }
    }
    // Lower-case the remainder as a whole string so that context-sensitive rules (final sigma)
    // see the same neighbours as Python does. Python's final-sigma rule looks at the whole
    // string, including the first character, so lower-case `first + rest` and drop the first
    // character's lower-case form.
    let rest = chars.as_str();
    if !rest.is_empty() {
        let first_lower: String = first.to_lowercase().collect();
        let joined = format!("{first_lower}{rest}").to_lowercase();
        out.push_str(&joined[first_lower.len()..]);
    }
    out
}

/// Removes every non-overlapping match of the Python regex `\[.*?\]` (leftmost first; `.`
/// does not match `\n`), as `re.sub("\\[.*?\\]", "", text)` does.
pub fn remove_bracketed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // The lazy `.*?` stops at the first `]`, but may not cross a newline.
        let close = after.find(']');
        let newline = after.find('\n');
        match (close, newline) {
            (Some(c), n) if n.is_none_or(|n| c < n) => {
                rest = &after[c + 1..];
            }
            _ => {
                // No match starting at this `[`: keep it and continue scanning after it.
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// lm-evaluation-harness HellaSwag `preprocess(text)`:
/// `strip`, `" [title]"` → `". "`, drop `\[.*?\]`, then `"  "` → `" "` (a single pass).
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = py_strip(text).replace(" [title]", ". ");
    let text = remove_bracketed(&text);
    text.replace("  ", " ")
}

/// The HellaSwag query before preprocessing: `activity_label + ": " + ctx_a + " " +
/// ctx_b.capitalize()`, then [`hellaswag_preprocess`].
pub fn hellaswag_query(activity_label: &str, ctx_a: &str, ctx_b: &str) -> String {
    hellaswag_preprocess(&format!(
        "{activity_label}: {ctx_a} {}",
        py_capitalize(ctx_b)
    ))
}

/// WinoGrande partial evaluation pieces: `(sentence[:idx], sentence[idx+1:].strip())` with
/// `idx = sentence.index("_")`; `None` when the sentence has no blank.
pub fn winogrande_split(sentence: &str) -> Option<(&str, &str)> {
    let idx = sentence.find('_')?;
    Some((&sentence[..idx], py_strip(&sentence[idx + 1..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python() {
        assert_eq!(py_strip("  a b \n\t"), "a b");
        assert_eq!(py_strip("\u{1f}x\u{a0}"), "x");
        assert_eq!(py_lstrip("  a "), "a ");
        assert_eq!(py_strip(""), "");
    }

    #[test]
    fn capitalize_matches_python() {
        // Python: "then, the MAN walks.".capitalize() == "Then, the man walks."
        assert_eq!(
            py_capitalize("then, the MAN walks."),
            "Then, the man walks."
        );
        assert_eq!(py_capitalize("A MAN"), "A man");
        assert_eq!(py_capitalize(""), "");
        assert_eq!(
            py_capitalize(" leading space Keeps"),
            " leading space keeps"
        );
        assert_eq!(py_capitalize("ßx"), "Ssx");
        assert_eq!(py_capitalize("ǆemal"), "ǅemal");
        assert_eq!(py_capitalize("éCOLE"), "École");
        // Final sigma: Python "ΟΔΟΣ".capitalize() == "Οδος".
        assert_eq!(py_capitalize("ΟΔΟΣ"), "Οδος");
        assert_eq!(py_capitalize("1ABC"), "1abc");
    }

    #[test]
    fn bracket_removal_matches_python_regex() {
        // re.sub("\\[.*?\\]", "", s)
        assert_eq!(remove_bracketed("a [b] c [d]e"), "a  c e");
        assert_eq!(remove_bracketed("a [b [c] d] e"), "a  d] e");
        assert_eq!(remove_bracketed("x [no close"), "x [no close");
        assert_eq!(remove_bracketed("x [a\nb] [c]"), "x [a\nb] ");
        assert_eq!(remove_bracketed("[]"), "");
        assert_eq!(remove_bracketed("[[x]]"), "]");
    }

    #[test]
    fn hellaswag_preprocess_matches_lm_eval() {
        // preprocess("  Home and Garden: [header] How to x [title] Do y. [step] Z  ")
        //  strip   -> "Home and Garden: [header] How to x [title] Do y. [step] Z"
        //  [title] -> "Home and Garden: [header] How to x. Do y. [step] Z"
        //  regex   -> "Home and Garden:  How to x. Do y.  Z"
        //  "  "    -> "Home and Garden: How to x. Do y. Z"
        assert_eq!(
            hellaswag_preprocess("  Home and Garden: [header] How to x [title] Do y. [step] Z  "),
            "Home and Garden: How to x. Do y. Z"
        );
        // Only a single pass of the double-space replacement: three spaces become two.
        assert_eq!(hellaswag_preprocess("a   b"), "a  b");
        assert_eq!(
            hellaswag_query("Roof shingle removal", "A man is sitting on a roof.", "he"),
            "Roof shingle removal: A man is sitting on a roof. He"
        );
        // An empty ctx_b leaves a trailing space in the joined string; strip removes it.
        assert_eq!(hellaswag_query("X", "a b.", ""), "X: a b.");
    }

    #[test]
    fn winogrande_split_matches_lm_eval() {
        let s = "Sarah was a much better surgeon than Maria so _ always got the easier cases.";
        let (prefix, target) = winogrande_split(s).unwrap();
        assert_eq!(prefix, "Sarah was a much better surgeon than Maria so ");
        assert_eq!(target, "always got the easier cases.");
        assert_eq!(winogrande_split("a _ b _ c"), Some(("a ", "b _ c")));
        assert_eq!(winogrande_split("ends with _"), Some(("ends with ", "")));
        assert_eq!(winogrande_split("no blank"), None);
    }
}
