//! Fitting text to a terminal: what the operator reads before answering
//! (the plan, the preview), the live progress rows and the final report
//! must not wrap at the terminal's edge, where a hard wrap splits words and
//! throws indicatif's redraw off by a line per wrapped row.

use console::measure_text_width;

/// Columns of the terminal on stderr (where the prompt, the preview and the
/// progress go), or 80 when it is not a terminal or does not say.
pub fn stderr_columns() -> usize {
    let term = console::Term::stderr();
    if term.is_term() {
        if let Some((_, cols)) = term.size_checked() {
            return usize::from(cols).max(20);
        }
    }
    80
}

/// Columns of the terminal on stdout, `None` when stdout is not one.
pub fn stdout_columns() -> Option<usize> {
    let term = console::Term::stdout();
    if !term.is_term() {
        return None;
    }
    Some(
        term.size_checked()
            .map_or(80, |(_, c)| usize::from(c).max(20)),
    )
}

/// `text` wrapped at `width` display columns: the first line after
/// `first`, the rest after `rest`. Words longer than a line stay whole.
pub fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ') {
        let len = measure_text_width(&line) + usize::from(!empty) + measure_text_width(word);
        if !empty && len > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Every line of `block` that is wider than `width` wrapped, its
/// continuation lines indented two columns deeper than the line itself.
pub fn fit_block(block: &str, width: usize) -> String {
    let mut out = String::new();
    for line in block.lines() {
        if measure_text_width(line) <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        out.push_str(&wrap(body, indent, &format!("{indent}  "), width));
    }
    if !block.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// `text` cut to `width` display columns, ending in `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if measure_text_width(text) <= width {
        return text.to_string();
    }
    console::truncate_str(text, width, "…").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_block_keeps_every_line_within_the_width_and_every_word() {
        let block = "  orders     orders-east-1 (east) → orders-west-1 (west)\n             data loss: none: the candidate replays the fenced primary's final position before it is promoted";
        let fitted = fit_block(block, 80);
        assert!(
            fitted.lines().all(|l| measure_text_width(l) <= 80),
            "{fitted}"
        );
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words(&fitted), words(block));
        assert!(fitted
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("               "));
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("✓ promote 12 ms", 80), "✓ promote 12 ms");
        let cut = truncate("✓ wait_for_position 4 ms · ✓ make_sticky 68 ms", 20);
        assert_eq!(measure_text_width(&cut), 20);
        assert!(cut.ends_with('…'));
    }
}
