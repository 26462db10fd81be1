//! Text: a product's title and description from its [`Attributes`], and the vocabulary in
//! which each garment's text is written (`TextSpec`, filled in per garment in `garments`).
//!
//! `describe` draws from the product's random stream; the order of its draws is part of the
//! generator's output, so it must not change.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::attributes::{Attributes, Color, Pattern};

/// One option of a variant axis.
pub(super) struct Opt {
    pub(super) key: &'static str,
    /// Adjectives usable before the noun (title and lead sentence).
    pub(super) adj: &'static [&'static str],
    /// Stand-alone sentences stating the option.
    pub(super) sent: &'static [&'static str],
}

/// How a garment is written about.
pub(super) struct TextSpec {
    pub(super) nouns: &'static [&'static str],
    pub(super) fabrics: &'static [&'static str],
    pub(super) axes: &'static [&'static [Opt]],
    /// Visible details true for every product of the garment.
    pub(super) details: &'static [&'static str],
    /// Non-visible filler facts, in groups of mutually exclusive ones.
    pub(super) fillers: &'static [&'static [&'static str]],
}

/// An option; short for `Opt { key, adj, sent }` in the garment tables.
pub(super) const fn o(
    key: &'static str,
    adj: &'static [&'static str],
    sent: &'static [&'static str],
) -> Opt {
    Opt { key, adj, sent }
}

/// Phrasings of a colour used in descriptions; each one contains `name()` and no other colour
/// name.
fn color_forms(c: Color) -> &'static [&'static str] {
    match c {
        Color::Black => &["black", "jet black"],
        Color::White => &["white", "bright white", "optic white"],
        Color::Navy => &["navy", "dark navy"],
        Color::Blue => &["blue", "mid blue", "bright blue"],
        Color::Red => &["red", "bright red"],
        Color::Green => &["green", "forest green", "bottle green"],
        Color::Yellow => &["yellow", "sunflower yellow"],
        Color::Beige => &["beige", "sand beige"],
        Color::Grey => &["grey", "heather grey", "mid grey"],
        Color::Pink => &["pink", "light pink", "rose pink"],
        Color::Brown => &["brown", "chocolate brown", "dark brown"],
    }
}

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn join_words(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Clause appended to the lead sentence, e.g. "featuring white vertical stripes".
fn pattern_clause(p: Pattern, c2: &str, rng: &mut ChaCha8Rng) -> String {
    let k = rng.random_range(0..3);
    match p {
        Pattern::Solid => String::new(),
        Pattern::VerticalStripes => match k {
            0 => format!("with vertical {c2} stripes"),
            1 => format!("featuring {c2} vertical stripes"),
            _ => format!("with vertical stripes in {c2}"),
        },
        Pattern::HorizontalStripes => match k {
            0 => format!("with horizontal {c2} stripes"),
            1 => format!("featuring {c2} horizontal stripes"),
            _ => format!("with horizontal stripes in {c2}"),
        },
        Pattern::Checks => match k {
            0 => format!("with a {c2} check pattern"),
            1 => format!("featuring {c2} gingham checks"),
            _ => format!("with {c2} plaid checks"),
        },
        Pattern::Dots => match k {
            0 => format!("with {c2} polka dots"),
            1 => format!("featuring a {c2} polka-dot print"),
            _ => format!("with a {c2} dot print"),
        },
    }
}

/// Stand-alone sentence stating the pattern.
fn pattern_sentence(p: Pattern, c2: &str, rng: &mut ChaCha8Rng) -> String {
    let first = rng.random_bool(0.5);
    match (p, first) {
        (Pattern::Solid, _) => String::new(),
        (Pattern::VerticalStripes, true) => format!("Vertical stripes in {c2} throughout."),
        (Pattern::VerticalStripes, false) => {
            format!("{} vertical stripes throughout.", capitalize(c2))
        }
        (Pattern::HorizontalStripes, true) => format!("Horizontal stripes in {c2} throughout."),
        (Pattern::HorizontalStripes, false) => {
            format!("{} horizontal stripes throughout.", capitalize(c2))
        }
        (Pattern::Checks, true) => format!("{} check pattern throughout.", capitalize(c2)),
        (Pattern::Checks, false) => format!("Gingham checks in {c2}."),
        (Pattern::Dots, true) => format!("{} polka dots throughout.", capitalize(c2)),
        (Pattern::Dots, false) => format!("Dot print in {c2}."),
    }
}

/// Adjective used in titles.
fn pattern_title_adj(p: Pattern, rng: &mut ChaCha8Rng) -> &'static str {
    let forms: &[&'static str] = match p {
        Pattern::Solid => return "",
        Pattern::VerticalStripes => &["striped", "pinstriped", "vertical-stripe"],
        Pattern::HorizontalStripes => &["striped", "horizontal-stripe"],
        Pattern::Checks => &["checked", "plaid", "gingham"],
        Pattern::Dots => &["polka-dot", "dotted"],
    };
    forms[rng.random_range(0..forms.len())]
}

/// Title and description for the attributes.
pub(super) fn describe(a: &Attributes, spec: &TextSpec, rng: &mut ChaCha8Rng) -> (String, String) {
    let noun = *pick(rng, spec.nouns);
    let fabric = a.fabric;
    let c1 = *pick(rng, color_forms(a.color));
    let c2 = *pick(rng, color_forms(a.second_color));
    let opts: Vec<&Opt> = spec
        .axes
        .iter()
        .enumerate()
        .map(|(k, ax)| &ax[a.variants[k] as usize])
        .collect();

    // Which options go into the lead sentence as adjectives, which get their
    // own sentence.
    let mut lead_adj: Vec<&str> = Vec::new();
    let mut later: Vec<String> = Vec::new();
    for opt in &opts {
        if opt.adj.is_empty() {
            if !opt.sent.is_empty() {
                later.push(pick(rng, opt.sent).to_string());
            }
        } else if opt.sent.is_empty() || rng.random_bool(0.6) {
            lead_adj.push(*pick(rng, opt.adj));
        } else {
            later.push(pick(rng, opt.sent).to_string());
        }
    }
    let patterned = a.pattern != Pattern::Solid;
    let pat_in_lead = !patterned || rng.random_bool(0.75);
    let pat = if patterned && pat_in_lead {
        format!(" {}", pattern_clause(a.pattern, c2, rng))
    } else {
        String::new()
    };
    let adjs = lead_adj.join(" ");
    let lead = match rng.random_range(0..3) {
        0 => format!("{} in {c1}{pat}.", join_words(&[&adjs, fabric, noun])),
        1 => {
            let color = if !c1.contains(' ') && rng.random_bool(0.3) {
                format!("{c1}-toned")
            } else {
                c1.to_string()
            };
            format!("{}{pat}.", join_words(&[&color, &adjs, fabric, noun]))
        }
        _ => format!("{} in {c1} {fabric}{pat}.", join_words(&[&adjs, noun])),
    };
    let mut sentences = vec![capitalize(&lead)];
    if patterned && !pat_in_lead {
        sentences.push(pattern_sentence(a.pattern, c2, rng));
    }
    sentences.extend(later);

    // Up to 4 sentences in all: fill with details (visible) and fillers.
    let room = 4usize.saturating_sub(sentences.len()).min(3);
    let extra = rng.random_range(0..=room);
    let n_pool = spec.details.len() + spec.fillers.len();
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < extra.min(n_pool) {
        let i = rng.random_range(0..n_pool);
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    for i in chosen {
        let sentence = match i.checked_sub(spec.details.len()) {
            None => spec.details[i],
            Some(f) => *pick(rng, spec.fillers[f]),
        };
        sentences.push(sentence.to_string());
    }
    let description = sentences.join(" ");

    // Title.
    let color = a.color.name();
    let pat_adj = pattern_title_adj(a.pattern, rng);
    let mut title_adjs: Vec<&str> = Vec::new();
    for opt in &opts {
        if !opt.adj.is_empty() && rng.random_bool(0.55) {
            title_adjs.push(*pick(rng, opt.adj));
        }
    }
    if title_adjs.is_empty() && !patterned {
        let with_adj: Vec<&&Opt> = opts.iter().filter(|o| !o.adj.is_empty()).collect();
        if !with_adj.is_empty() {
            let opt = *pick(rng, &with_adj);
            title_adjs.push(*pick(rng, opt.adj));
        }
    }
    let title_adjs = title_adjs.join(" ");
    let title = match rng.random_range(0..3) {
        0 => join_words(&[color, pat_adj, &title_adjs, noun]),
        1 if patterned => {
            let both = format!("{color} & {}", a.second_color.name());
            join_words(&[&both, pat_adj, noun])
        }
        1 => join_words(&[color, &title_adjs, fabric, noun]),
        _ => join_words(&[color, pat_adj, fabric, noun]),
    };
    (capitalize(&title), description)
}

#[cfg(test)]
mod tests {
    use super::super::garments::text_spec;
    use super::super::{Color, Pattern, products};

    use super::super::tests::cfg;

    fn words(s: &str) -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn text_states_attributes() {
        let ps = products(&cfg(3000, 4));
        let color_names: Vec<&str> = Color::ALL.iter().map(|c| c.name()).collect();
        let mut titles: Vec<&str> = Vec::new();
        for p in &ps {
            let a = &p.attributes;
            let d = words(&p.description);
            let has = |w: &str| d.iter().any(|x| x == w);
            assert!(has(a.color.name()), "colour missing: {}", p.description);
            let n_sent = p.description.matches(". ").count() + 1;
            assert!((1..=4).contains(&n_sent), "{}", p.description);
            // Only colours of the product are named.
            for w in &d {
                if color_names.contains(&w.as_str()) {
                    let ok = w == a.color.name()
                        || (a.pattern != Pattern::Solid && w == a.second_color.name());
                    assert!(ok, "stray colour {w}: {}", p.description);
                }
            }
            let pattern_words = ["stripes", "check", "checks", "plaid", "dot", "dots"];
            match a.pattern {
                Pattern::Solid => {
                    assert!(!d.iter().any(|w| pattern_words.contains(&w.as_str())));
                }
                pat => {
                    assert!(has(a.second_color.name()), "{}", p.description);
                    let ok = match pat {
                        Pattern::VerticalStripes => has("vertical") && has("stripes"),
                        Pattern::HorizontalStripes => has("horizontal") && has("stripes"),
                        Pattern::Checks => has("check") || has("checks"),
                        _ => has("dot") || has("dots"),
                    };
                    assert!(ok, "pattern {pat:?} missing: {}", p.description);
                }
            }
            // Every stated variant option shows up (adjective or sentence).
            let spec = text_spec(a.garment);
            for (k, ax) in spec.axes.iter().enumerate() {
                let opt = &ax[a.variants[k] as usize];
                let forms = opt.adj.iter().chain(opt.sent.iter());
                let mut any = false;
                let mut stated = false;
                for f in forms {
                    stated = true;
                    let f = f.trim_end_matches('.').to_lowercase();
                    any |= p.description.to_lowercase().contains(&f);
                }
                assert!(
                    !stated || any,
                    "variant {} missing: {}",
                    opt.key,
                    p.description
                );
            }
            assert!(
                words(&p.title).iter().any(|w| w == a.color.name()),
                "{}",
                p.title
            );
            titles.push(&p.title);
        }
        titles.sort_unstable();
        let mut max_run = 0;
        for g in titles.chunk_by(|a, b| a == b) {
            max_run = max_run.max(g.len());
        }
        assert!(max_run <= 12, "a title repeats {max_run} times in 3000");
    }
}
