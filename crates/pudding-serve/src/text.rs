//! The text of a generation as it grows: incremental detokenisation that never sends half
//! a character or any part of a `stop` string.

/// Turns the growing decoded text of a sequence into the pieces sent to the client.
///
/// Each call gets the whole text decoded so far (decoding all ids again is what keeps
/// multi-token characters and tokenizer clean-ups right). A trailing U+FFFD (an incomplete
/// UTF-8 sequence of byte tokens) and the longest tail that could begin a stop string are
/// held back until the next token decides them.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    stop: Vec<String>,
    sent: String,
}

impl TextStream {
    /// A stream that ends at the first occurrence of any of `stop` (empty strings ignored).
    pub fn new(stop: Vec<String>) -> Self {
        Self {
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            sent: String::new(),
        }
    }

    /// The text sent so far.
    pub fn sent(&self) -> &str {
        &self.sent
    }

    /// The new text that can be sent now, given everything decoded so far, and whether a
    /// stop string ended the text (then the text is cut before it and nothing follows).
    pub fn advance(&mut self, decoded: &str) -> (String, bool) {
        if let Some(end) = self.first_stop(decoded) {
            return (self.extend_to(&decoded[..end]), true);
        }
        let settled = decoded.trim_end_matches('\u{FFFD}');
        let held = self.stop_prefix_tail(settled);
        (self.extend_to(&settled[..settled.len() - held]), false)
    }

    /// What is left to send once the sequence has ended for another reason than a stop
    /// string: everything decoded (a stop string, if one appears, still cuts it).
    pub fn finish(&mut self, decoded: &str) -> String {
        let end = self.first_stop(decoded).unwrap_or(decoded.len());
        self.extend_to(&decoded[..end])
    }

    /// Byte offset of the earliest stop string in `text`.
    fn first_stop(&self, text: &str) -> Option<usize> {
        self.stop.iter().filter_map(|s| text.find(s.as_str())).min()
    }

    /// Bytes at the end of `text` that are a proper prefix of some stop string.
    fn stop_prefix_tail(&self, text: &str) -> usize {
        let mut held = 0;
        for stop in &self.stop {
            for (cut, _) in stop.char_indices().skip(1) {
                if cut > held && text.ends_with(&stop[..cut]) {
                    held = cut;
                }
            }
        }
        held
    }

    /// Sends `text` past what was sent, when it extends it (a decode that rewrote earlier
    /// text sends nothing until it agrees again).
    fn extend_to(&mut self, text: &str) -> String {
        match text.strip_prefix(self.sent.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.sent.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TextStream;

    fn run(stop: &[&str], steps: &[&str]) -> (Vec<String>, Option<usize>) {
        let mut stream = TextStream::new(stop.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let (piece, stopped) = stream.advance(step);
            out.push(piece);
            if stopped {
                return (out, Some(i));
            }
        }
        out.push(stream.finish(steps.last().copied().unwrap_or("")));
        (out, None)
    }

    #[test]
    fn sends_growing_text_and_holds_back_an_incomplete_character() {
        let (pieces, stopped) = run(&[], &["Hel", "Hello", "Hello \u{FFFD}", "Hello é"]);
        assert_eq!(pieces, ["Hel", "lo", " ", "é", ""]);
        assert_eq!(stopped, None);
    }

    #[test]
    fn cuts_at_a_stop_string_split_over_tokens_and_never_sends_part_of_it() {
        let (pieces, stopped) = run(&["\n\nQ:"], &["A: 4", "A: 4\n", "A: 4\n\n", "A: 4\n\nQ: 5"]);
        assert_eq!(pieces, ["A: 4", "", "", ""]);
        assert_eq!(stopped, Some(3));
    }

    #[test]
    fn a_prefix_that_turns_out_not_to_stop_is_sent_later() {
        let (pieces, _) = run(&["END"], &["a E", "a EN", "a ENx"]);
        assert_eq!(pieces, ["a ", "", "ENx", ""]);
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins_and_finish_flushes() {
        let (pieces, stopped) = run(&["b", "cd"], &["xxcdyb"]);
        assert_eq!(pieces, ["xx"]);
        assert_eq!(stopped, Some(0));
        let mut stream = TextStream::new(vec!["zz".into(), String::new()]);
        assert_eq!(stream.advance("abz"), ("ab".to_string(), false));
        assert_eq!(stream.finish("abz"), "z");
        assert_eq!(stream.sent(), "abz");
    }
}
