//! How `fashionbert inspect` prints a table: one line per row, fitted to the terminal's width
//! (long text cut with `…`, lists shown by length and first items), or one block per record
//! (`--vertical`) where every field gets a whole line.

use polars::prelude::{AnyValue, DataFrame};

/// The columns between two table columns.
const GAP: usize = 2;
/// The narrowest a column is cut to before columns are left out instead.
const MIN_WIDTH: usize = 6;
/// The most list items a cell formats (the rest only counts).
const LIST_ITEMS: usize = 16;

/// The terminal's width: `COLUMNS` when set (as shells export it), else the terminal's own
/// size, else 120 (output to a file or a pipe).
pub fn terminal_width() -> usize {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w >= 20)
    {
        return w;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| cols as usize)
        .filter(|w| *w >= 20)
        .unwrap_or(120)
}

/// One cell on one line: strings as they are (control characters as spaces), lists as
/// `[n: a, b, …]`, nulls as `null`.
pub fn cell(v: &AnyValue) -> String {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    match v {
        AnyValue::Null => "null".to_string(),
        AnyValue::String(s) => one_line(s),
        AnyValue::StringOwned(s) => one_line(s),
        AnyValue::List(s) | AnyValue::Array(s, _) => {
            let items: Vec<String> = s.iter().take(LIST_ITEMS).map(|x| cell(&x)).collect();
            let more = if s.len() > LIST_ITEMS { ", …" } else { "" };
            format!("[{}: {}{more}]", s.len(), items.join(", "))
        }
        other => one_line(&other.to_string()),
    }
}

/// `s` cut to `width` characters, the last one `…` when anything was cut.
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// The widths of the columns that fit in `width` (the others are left out, from the right):
/// each column's natural width, the widest ones cut down evenly until the row fits.
fn layout(natural: &[usize], width: usize) -> Vec<usize> {
    let floor = |n: usize| n.min(MIN_WIDTH);
    let mut shown = natural.len();
    while shown > 1
        && natural[..shown].iter().map(|&n| floor(n)).sum::<usize>() + GAP * (shown - 1) > width
    {
        shown -= 1;
    }
    let natural = &natural[..shown];
    let room = width.saturating_sub(GAP * shown.saturating_sub(1));
    if natural.iter().sum::<usize>() <= room {
        return natural.to_vec();
    }
    // The largest cap c with Σ min(natural, max(c, floor)) ≤ room: water-filling from the top.
    let fits = |c: usize| {
        natural
            .iter()
            .map(|&n| n.min(c.max(floor(n))))
            .sum::<usize>()
            <= room
    };
    let (mut lo, mut hi) = (0, natural.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    natural.iter().map(|&n| n.min(lo.max(floor(n)))).collect()
}

/// The names of `df`'s columns, in order.
pub fn column_names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

/// The first `rows` rows of `df` as lines of at most `width` characters: a header, a rule and
/// one line per row; a last line names the columns left out for want of width.
pub fn table(df: &DataFrame, rows: usize, width: usize) -> Vec<String> {
    let rows = rows.min(df.height());
    let names = column_names(df);
    let cells: Vec<Vec<String>> = df
        .get_columns()
        .iter()
        .map(|c| {
            (0..rows)
                .map(|i| c.get(i).map(|v| cell(&v)).unwrap_or_default())
                .collect()
        })
        .collect();
    let natural: Vec<usize> = names
        .iter()
        .zip(&cells)
        .map(|(n, col)| {
            col.iter()
                .map(|c| c.chars().count())
                .chain([n.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let widths = layout(&natural, width);
    let line = |field: &dyn Fn(usize) -> String| -> String {
        let parts: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(j, &w)| pad(&cut(&field(j), w), w))
            .collect();
        parts.join(&" ".repeat(GAP)).trim_end().to_string()
    };
    let mut out = vec![line(&|j| names[j].clone())];
    out.push(cut(
        &widths
            .iter()
            .map(|&w| "─".repeat(w))
            .collect::<Vec<_>>()
            .join(&" ".repeat(GAP)),
        width,
    ));
    for i in 0..rows {
        out.push(line(&|j| cells[j][i].clone()));
    }
    if widths.len() < names.len() {
        out.push(cut(
            &format!(
                "… {} more column(s): {} (--vertical shows every column, --columns picks some)",
                names.len() - widths.len(),
                names[widths.len()..].join(", ")
            ),
            width,
        ));
    }
    out
}

/// The first `rows` rows of `df`, one block per row: a header line, then one `name  value`
/// line per column, each at most `width` characters.
pub fn vertical(df: &DataFrame, rows: usize, width: usize) -> Vec<String> {
    let rows = rows.min(df.height());
    let names = column_names(df);
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let value_width = width.saturating_sub(name_width + GAP).max(MIN_WIDTH);
    let mut out = Vec::new();
    for i in 0..rows {
        out.push(cut(
            &format!("── row {} of {} {}", i + 1, df.height(), "─".repeat(width)),
            width,
        ));
        for (name, col) in names.iter().zip(df.get_columns()) {
            let v = col.get(i).map(|v| cell(&v)).unwrap_or_default();
            out.push(format!(
                "{}{}{}",
                pad(name, name_width),
                " ".repeat(GAP),
                cut(&v, value_width)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{col_i32_lists, col_i64, col_str, frame};

    fn sample() -> DataFrame {
        let long = "A very long product description that goes on\nand on about fabric, fit, collar, cuffs and buttons";
        frame(vec![
            col_i64("pair_id", &[1, 2, 3]),
            col_str("text", &[long, "short", ""]),
            col_str("subcategory", &["SHIRTS", "JEANS", "TOPS"]),
            col_i32_lists("input_ids", &(0..3 * 40).collect::<Vec<i32>>(), 40),
        ])
        .unwrap()
    }

    #[test]
    fn a_table_fits_the_width_with_one_line_per_row() {
        let df = sample();
        for width in [40, 60, 80, 200] {
            let lines = table(&df, 2, width);
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{width}: {lines:#?}"
            );
            // header, rule, 2 rows and perhaps the line naming left-out columns
            assert!(lines.len() == 4 || lines.len() == 5, "{lines:#?}");
            assert!(lines[0].starts_with("pair_id"), "{lines:#?}");
            assert!(
                lines[2].starts_with('1') && lines[3].starts_with('2'),
                "{lines:#?}"
            );
        }
        let wide = table(&df, 3, 400);
        assert_eq!(wide.len(), 5);
        assert!(
            wide[2].contains("and on about fabric"),
            "newline kept on one line: {wide:#?}"
        );
        assert!(
            wide[2].contains("[40: 0, 1, 2,") && wide[2].contains(", …]"),
            "{wide:#?}"
        );
        let narrow = table(&df, 1, 40);
        assert!(narrow[2].contains('…'), "long text is cut: {narrow:#?}");
    }

    #[test]
    fn columns_that_cannot_fit_are_named() {
        let lines = table(&sample(), 1, 20);
        let last = lines.last().unwrap();
        assert!(last.starts_with("… "), "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:#?}");
    }

    #[test]
    fn layout_cuts_the_widest_columns_first() {
        assert_eq!(layout(&[5, 10, 100], 200), vec![5, 10, 100]);
        let w = layout(&[5, 10, 100], 40);
        assert_eq!(w[..2], [5, 10]);
        assert_eq!(w.iter().sum::<usize>() + 2 * GAP, 40);
        let w = layout(&[50, 50], 42);
        assert_eq!(w, vec![20, 20]);
    }

    #[test]
    fn vertical_gives_each_field_a_line() {
        let lines = vertical(&sample(), 2, 50);
        assert_eq!(lines.len(), 2 * 5);
        assert!(lines[0].starts_with("── row 1 of 3"), "{lines:#?}");
        assert!(lines[1].starts_with("pair_id      1"), "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 50), "{lines:#?}");
    }

    #[test]
    fn cut_marks_what_it_cuts() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefg", 6), "abcde…");
        assert_eq!(cut("äöü", 2), "ä…");
    }
}
