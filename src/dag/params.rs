//! Typed stage parameters: the schema a stage declares, the values a config gives, and their
//! canonical form (the bytes that go into a stage's cache key).
//!
//! Over 600 lines with its tests on purpose: the spec, the value types, their canonical bytes and
//! the `stage_params!` and `param_choice!` macros that tie typed structs and enums to their specs
//! change together.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a parameter, as a stage declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Int,
    Float,
    Bool,
    Str,
    /// A string that must be one of the listed choices.
    Choice(&'static [&'static str]),
    /// A list of strings.
    StrList,
    /// A string naming a file or folder, relative to the config's folder. The stage key holds
    /// the path after resolving (`..`, `.`, symlinks), relative to that folder: the same file
    /// under another spelling keeps the key. A value that names nothing (`random`) is kept.
    Path,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Int => write!(f, "an integer"),
            ParamKind::Float => write!(f, "a number"),
            ParamKind::Bool => write!(f, "true or false"),
            ParamKind::Str => write!(f, "a string"),
            ParamKind::Choice(c) => write!(f, "one of {}", c.join(", ")),
            ParamKind::StrList => write!(f, "a list of strings"),
            ParamKind::Path => write!(f, "a path (relative to the config's folder)"),
        }
    }
}

/// The default of a parameter. `None` makes the parameter optional: it is absent unless given.
#[derive(Debug, Clone, Copy)]
pub enum ParamDefault {
    None,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    StrList(&'static [&'static str]),
}

/// One parameter of a stage: its name, type, default and a line of documentation.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: ParamDefault,
    pub doc: &'static str,
    /// The allowed closed interval of a numeric parameter (checked when the config is read).
    pub range: Option<(f64, f64)>,
}

impl ParamSpec {
    pub const fn new(
        name: &'static str,
        kind: ParamKind,
        default: ParamDefault,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            default,
            doc,
            range: None,
        }
    }

    /// Restricts a numeric parameter to `lo ..= hi` (use `f64::INFINITY` for no upper bound).
    pub const fn range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }

    /// Restricts a numeric parameter to `lo` or more.
    pub const fn min(self, lo: f64) -> Self {
        self.range(lo, f64::INFINITY)
    }

    /// The allowed values in words, for errors and docs ("from 1 to 512", "0 or more").
    pub fn range_text(&self) -> Option<String> {
        let (lo, hi) = self.range?;
        Some(if hi.is_infinite() {
            format!("{lo} or more")
        } else {
            format!("from {lo} to {hi}")
        })
    }

    fn check_range(&self, v: f64) -> Result<(), String> {
        match self.range {
            Some((lo, hi)) if !(lo..=hi).contains(&v) => Err(format!(
                "expected {} {}, found {v}",
                self.kind,
                self.range_text().unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }

    /// The default as a value (`None`: the parameter is optional and absent unless given).
    pub fn default_value(&self) -> Option<ParamValue> {
        match self.default {
            ParamDefault::None => None,
            ParamDefault::Int(v) => Some(ParamValue::Int(v)),
            ParamDefault::Float(v) => Some(ParamValue::Float(v)),
            ParamDefault::Bool(v) => Some(ParamValue::Bool(v)),
            ParamDefault::Str(v) => Some(ParamValue::Str(v.to_string())),
            ParamDefault::StrList(v) => Some(ParamValue::StrList(
                v.iter().map(|s| s.to_string()).collect(),
            )),
        }
    }
}

/// A parameter value after type checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    StrList(Vec<String>),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "{v:?}"),
            ParamValue::StrList(v) => write!(f, "{v:?}"),
        }
    }
}

/// A value as written in a config file or on the command line, before type checking.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<RawValue>),
    /// Something no parameter can hold (a table, a date); the string says what it was.
    Other(&'static str),
}

impl RawValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            RawValue::Bool(_) => "a boolean",
            RawValue::Int(_) => "an integer",
            RawValue::Float(_) => "a float",
            RawValue::Str(_) => "a string",
            RawValue::List(_) => "a list",
            RawValue::Other(what) => what,
        }
    }

    /// Parses a `--set` value: a TOML literal (`7`, `0.5`, `true`, `"x"`, `["a", "b"]`), or,
    /// failing that, the text itself as a string (so `--set ingest.source=csv` works unquoted).
    pub fn parse_cli(text: &str) -> RawValue {
        let doc = format!("v = {text}");
        if let Ok(table) = toml::de::DeTable::parse(&doc) {
            if let Some((_, v)) = table.get_ref().iter().find(|(k, _)| k.get_ref() == "v") {
                return RawValue::from_de(v.get_ref());
            }
        }
        RawValue::Str(text.to_string())
    }

    pub(crate) fn from_de(v: &toml::de::DeValue<'_>) -> RawValue {
        use toml::de::DeValue;
        match v {
            DeValue::String(s) => RawValue::Str(s.to_string()),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map(RawValue::Int)
                .unwrap_or(RawValue::Other("an integer out of range")),
            DeValue::Float(f) => f
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .map(RawValue::Float)
                .unwrap_or(RawValue::Other("a float that cannot be read")),
            DeValue::Boolean(b) => RawValue::Bool(*b),
            DeValue::Datetime(_) => RawValue::Other("a date"),
            DeValue::Array(a) => {
                RawValue::List(a.iter().map(|x| RawValue::from_de(x.get_ref())).collect())
            }
            DeValue::Table(_) => RawValue::Other("a table"),
        }
    }
}

/// Checks a raw value against a parameter's kind; the error says what was expected.
pub fn check_value(spec: &ParamSpec, raw: &RawValue) -> Result<ParamValue, String> {
    let mismatch = || format!("expected {}, found {}", spec.kind, raw.type_name());
    match (spec.kind, raw) {
        (ParamKind::Int, RawValue::Int(v)) => {
            spec.check_range(*v as f64)?;
            Ok(ParamValue::Int(*v))
        }
        (ParamKind::Float, RawValue::Float(v)) => {
            if v.is_finite() {
                spec.check_range(*v)?;
                Ok(ParamValue::Float(*v))
            } else {
                Err(format!("expected a finite number, found {v}"))
            }
        }
        // An integer literal is a valid float (`lr = 1` means 1.0); it canonicalises to the float.
        (ParamKind::Float, RawValue::Int(v)) => {
            spec.check_range(*v as f64)?;
            Ok(ParamValue::Float(*v as f64))
        }
        (ParamKind::Bool, RawValue::Bool(v)) => Ok(ParamValue::Bool(*v)),
        (ParamKind::Str | ParamKind::Path, RawValue::Str(v)) => Ok(ParamValue::Str(v.clone())),
        (ParamKind::Choice(choices), RawValue::Str(v)) => {
            if choices.contains(&v.as_str()) {
                Ok(ParamValue::Str(v.clone()))
            } else {
                Err(format!(
                    "expected one of {}, found {v:?}",
                    choices.join(", ")
                ))
            }
        }
        (ParamKind::StrList, RawValue::List(items)) => items
            .iter()
            .map(|i| match i {
                RawValue::Str(s) => Ok(s.clone()),
                other => Err(format!(
                    "expected a list of strings, found a list holding {}",
                    other.type_name()
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ParamValue::StrList),
        _ => Err(mismatch()),
    }
}

/// The validated parameters of one stage: every declared parameter with its value (the given
/// one or the default), optional ones absent when not given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

/// A parameter was asked for with the wrong type, or was absent. A stage bug or a missing
/// optional parameter that the stage needs in this configuration.
#[derive(Debug, thiserror::Error)]
#[error("parameter `{name}`: {problem}")]
pub struct ParamError {
    pub name: String,
    pub problem: String,
}

impl Params {
    /// Fills in defaults; `given` must already be type checked against `specs`.
    pub fn with_defaults(specs: &[ParamSpec], given: BTreeMap<String, ParamValue>) -> Params {
        let mut values = BTreeMap::new();
        for spec in specs {
            if let Some(v) = given
                .get(spec.name)
                .cloned()
                .or_else(|| spec.default_value())
            {
                values.insert(spec.name.to_string(), v);
            }
        }
        Params { values }
    }

    /// Builds params from literal pairs (for tests and programmatic use).
    pub fn from_pairs<I: IntoIterator<Item = (String, ParamValue)>>(pairs: I) -> Params {
        Params {
            values: pairs.into_iter().collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    pub fn set(&mut self, name: &str, value: ParamValue) {
        self.values.insert(name.to_string(), value);
    }

    fn missing(name: &str) -> ParamError {
        ParamError {
            name: name.into(),
            problem: "is required here but not set".into(),
        }
    }

    fn wrong(name: &str, want: &str, got: &ParamValue) -> ParamError {
        ParamError {
            name: name.into(),
            problem: format!("expected {want}, holds {got}"),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, ParamError> {
        match self.values.get(name) {
            Some(ParamValue::Int(v)) => Ok(*v),
            Some(other) => Err(Self::wrong(name, "an integer", other)),
            None => Err(Self::missing(name)),
        }
    }

    /// An integer parameter that must be non-negative, as a usize.
    pub fn usize(&self, name: &str) -> Result<usize, ParamError> {
        let v = self.int(name)?;
        usize::try_from(v).map_err(|_| ParamError {
            name: name.into(),
            problem: format!("must not be negative, is {v}"),
        })
    }

    pub fn u64(&self, name: &str) -> Result<u64, ParamError> {
        Ok(self.usize(name)? as u64)
    }

    pub fn float(&self, name: &str) -> Result<f64, ParamError> {
        match self.values.get(name) {
            Some(ParamValue::Float(v)) => Ok(*v),
            Some(ParamValue::Int(v)) => Ok(*v as f64),
            Some(other) => Err(Self::wrong(name, "a number", other)),
            None => Err(Self::missing(name)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, ParamError> {
        match self.values.get(name) {
            Some(ParamValue::Bool(v)) => Ok(*v),
            Some(other) => Err(Self::wrong(name, "a boolean", other)),
            None => Err(Self::missing(name)),
        }
    }

    pub fn str(&self, name: &str) -> Result<&str, ParamError> {
        match self.values.get(name) {
            Some(ParamValue::Str(v)) => Ok(v),
            Some(other) => Err(Self::wrong(name, "a string", other)),
            None => Err(Self::missing(name)),
        }
    }

    /// An optional string: `Ok(None)` when absent or empty.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, ParamError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(ParamValue::Str(v)) if v.is_empty() => Ok(None),
            Some(ParamValue::Str(v)) => Ok(Some(v)),
            Some(other) => Err(Self::wrong(name, "a string", other)),
        }
    }

    pub fn str_list(&self, name: &str) -> Result<&[String], ParamError> {
        match self.values.get(name) {
            Some(ParamValue::StrList(v)) => Ok(v),
            Some(other) => Err(Self::wrong(name, "a list of strings", other)),
            None => Err(Self::missing(name)),
        }
    }

    /// The canonical JSON of the parameters: keys sorted, defaults filled in, integers given
    /// for floats already converted. Equal parameters give equal bytes.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&self.values).expect("params serialise")
    }

    /// The parameters whose values differ between `self` and `other`, with both values.
    pub fn diff(&self, other: &Params) -> Vec<(String, Option<ParamValue>, Option<ParamValue>)> {
        let mut names: Vec<&String> = self.values.keys().chain(other.values.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| {
                let a = other.values.get(n);
                let b = self.values.get(n);
                (a != b).then(|| (n.clone(), a.cloned(), b.cloned()))
            })
            .collect()
    }
}

/// A stage's params as one typed struct, declared with [`stage_params!`](crate::stage_params):
/// the struct's fields and the [`ParamSpec`]s the config is checked against come from one
/// declaration, so a field cannot drift from its spec.
pub trait StageParams: Sized {
    /// The specs, in declaration order (a stage's `StageSpec::params`).
    fn specs() -> &'static [ParamSpec];
    /// The typed values of validated params.
    fn from_params(p: &Params) -> Result<Self, ParamError>;
}

/// An optional string param this configuration needs: its value, or the error that says it
/// is not set (as [`Params::str`] gives for an absent param).
pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ParamError> {
    value.as_deref().ok_or_else(|| Params::missing(name))
}

/// A Rust type a param reads into: integers (checked non-negative for unsigned types), `f64`,
/// `bool`, `String` (also a choice), `Option<String>` (absent or empty: `None`), `Vec<String>`.
pub trait FromParam: Sized {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError>;
}

impl FromParam for i64 {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.int(name)
    }
}

impl FromParam for usize {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.usize(name)
    }
}

impl FromParam for u64 {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.u64(name)
    }
}

impl FromParam for u32 {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        let v = p.usize(name)?;
        u32::try_from(v).map_err(|_| ParamError {
            name: name.into(),
            problem: format!("must be below 2^32, is {v}"),
        })
    }
}

impl FromParam for f64 {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.float(name)
    }
}

impl FromParam for bool {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.bool(name)
    }
}

impl FromParam for String {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.str(name).map(str::to_string)
    }
}

impl FromParam for Option<String> {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.opt_str(name).map(|o| o.map(str::to_string))
    }
}

impl FromParam for Vec<String> {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        p.str_list(name).map(<[String]>::to_vec)
    }
}

/// The values of a choice param as an enum (declare one with [`param_choice!`](crate::param_choice)):
/// a typed param struct's field of such a type reads the param's value as a variant.
pub trait Choice: Sized + Copy + 'static {
    /// The values a pipeline file may give, in declaration order (for `ParamKind::Choice`).
    const CHOICES: &'static [&'static str];
    /// The variant named `s`.
    fn from_choice(s: &str) -> Option<Self>;
    /// The name of this variant in pipeline files.
    fn as_str(self) -> &'static str;
}

impl<T: Choice> FromParam for T {
    fn from_param(p: &Params, name: &str) -> Result<Self, ParamError> {
        let s = p.str(name)?;
        T::from_choice(s).ok_or_else(|| ParamError {
            name: name.into(),
            problem: format!("must be one of {}, is `{s}`", T::CHOICES.join(", ")),
        })
    }
}

/// Declares an enum whose variants are a choice param's values, with [`Choice`] (its
/// `CHOICES` go into the param's `ParamKind::Choice`) and `Display`.
///
/// ```
/// use fashionbert::dag::params::Choice;
/// fashionbert::param_choice! {
///     /// How images become squares.
///     pub enum Fit {
///         /// Squash to a square.
///         Stretch = "stretch",
///         /// Pad the short side.
///         Pad = "pad",
///     }
/// }
/// assert_eq!(Fit::CHOICES, &["stretch", "pad"]);
/// assert_eq!(Fit::from_choice("pad"), Some(Fit::Pad));
/// assert_eq!(Fit::Stretch.to_string(), "stretch");
/// ```
#[macro_export]
macro_rules! param_choice {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::dag::params::Choice for $name {
            const CHOICES: &'static [&'static str] = &[$($text),+];

            fn from_choice(s: &str) -> ::std::option::Option<Self> {
                match s {
                    $( $text => ::std::option::Option::Some(Self::$variant), )+
                    _ => ::std::option::Option::None,
                }
            }

            fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text ),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::dag::params::Choice::as_str(*self))
            }
        }
    };
}

/// Declares a stage's params: a struct with one documented field per param, its
/// [`ParamSpec`]s (`NAME::SPECS`, for the stage's `StageSpec::params`) and
/// [`StageParams`]. Each field gives its type, then `(kind, default, doc)` and optionally
/// `.min(x)` or `.range(lo, hi)`; the param's name is the field's name.
///
/// ```
/// use fashionbert::dag::{ParamDefault as D, ParamKind as K, Params, params::{Choice, StageParams}};
/// fashionbert::param_choice! {
///     /// How images become squares.
///     pub enum Fit { Stretch = "stretch", Pad = "pad" }
/// }
/// fashionbert::stage_params! {
///     /// The params of a toy stage.
///     pub struct ToyParams {
///         seed: u64 = (K::Int, D::Int(7), "sampling seed").min(0.0);
///         fit: Fit = (K::Choice(Fit::CHOICES), D::Str("pad"), "how images become squares");
///         csv: Option<String> = (K::Str, D::None, "the products CSV");
///     }
/// }
/// let p = Params::with_defaults(ToyParams::SPECS, Default::default());
/// let t = ToyParams::from_params(&p).unwrap();
/// assert_eq!((t.seed, t.fit, t.csv), (7, Fit::Pad, None));
/// assert_eq!(ToyParams::SPECS[0].name, "seed");
/// assert_eq!(ToyParams::SPECS[0].doc, "sampling seed");
/// ```
#[macro_export]
macro_rules! stage_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $field:ident : $ty:ty = ($kind:expr, $default:expr, $doc:literal $(,)?)
                    $(. $bound:ident ( $($arg:expr),* ))* ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                #[doc = $doc]
                pub $field: $ty,
            )*
        }

        impl $name {
            /// The specs of these params, in declaration order.
            pub const SPECS: &'static [$crate::dag::ParamSpec] = &[
                $(
                    $crate::dag::ParamSpec::new(stringify!($field), $kind, $default, $doc)
                        $(. $bound ( $($arg),* ))*
                ),*
            ];
        }

        impl $crate::dag::params::StageParams for $name {
            fn specs() -> &'static [$crate::dag::ParamSpec] {
                Self::SPECS
            }

            fn from_params(
                p: &$crate::dag::Params,
            ) -> ::std::result::Result<Self, $crate::dag::params::ParamError> {
                Ok(Self {
                    $(
                        $field: <$ty as $crate::dag::params::FromParam>::from_param(
                            p,
                            stringify!($field),
                        )?,
                    )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::new("n", ParamKind::Int, ParamDefault::Int(3), "count"),
        ParamSpec::new("lr", ParamKind::Float, ParamDefault::Float(0.5), "rate"),
        ParamSpec::new(
            "mode",
            ParamKind::Choice(&["a", "b"]),
            ParamDefault::Str("a"),
            "mode",
        ),
        ParamSpec::new("path", ParamKind::Str, ParamDefault::None, "optional"),
    ];

    #[test]
    fn defaults_fill_and_canonicalise() {
        let explicit = Params::with_defaults(
            SPECS,
            [("n".to_string(), ParamValue::Int(3))]
                .into_iter()
                .collect(),
        );
        let implicit = Params::with_defaults(SPECS, BTreeMap::new());
        assert_eq!(explicit.canonical_json(), implicit.canonical_json());
        assert!(implicit.get("path").is_none());
        assert_eq!(implicit.float("lr").unwrap(), 0.5);
    }

    #[test]
    fn int_literal_is_a_float_and_canonicalises_the_same() {
        let a = check_value(&SPECS[1], &RawValue::Int(1)).unwrap();
        let b = check_value(&SPECS[1], &RawValue::Float(1.0)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn type_errors_say_what_was_expected() {
        let e = check_value(&SPECS[0], &RawValue::Str("x".into())).unwrap_err();
        assert!(e.contains("expected an integer, found a string"), "{e}");
        let e = check_value(&SPECS[2], &RawValue::Str("c".into())).unwrap_err();
        assert!(e.contains("one of a, b"), "{e}");
    }

    #[test]
    fn cli_values_parse_as_toml_or_fall_back_to_text() {
        assert_eq!(RawValue::parse_cli("7"), RawValue::Int(7));
        assert_eq!(RawValue::parse_cli("0.25"), RawValue::Float(0.25));
        assert_eq!(RawValue::parse_cli("true"), RawValue::Bool(true));
        assert_eq!(RawValue::parse_cli("csv"), RawValue::Str("csv".into()));
        assert_eq!(
            RawValue::parse_cli("../data/x.csv"),
            RawValue::Str("../data/x.csv".into())
        );
        assert_eq!(
            RawValue::parse_cli("[\"a\", \"b\"]"),
            RawValue::List(vec![RawValue::Str("a".into()), RawValue::Str("b".into())])
        );
    }

    #[test]
    fn diff_lists_changed_params() {
        let a = Params::with_defaults(SPECS, BTreeMap::new());
        let mut b = a.clone();
        b.set("n", ParamValue::Int(4));
        let d = b.diff(&a);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "n");
    }
}
