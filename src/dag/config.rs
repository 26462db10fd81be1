//! `pipeline.toml`: parsing and validation against the registered stages, before anything runs.
//!
//! ```toml
//! [runtime]
//! artifacts = "artifacts"        # the store, relative to this file
//! device = "auto"                # any runtime key the application declares
//!
//! [stages.pairs]
//! deps = ["ingest"]              # upstream stages; default: the stages it reads
//! [stages.pairs.params]
//! seed = 1                       # checked against the stage's declared params
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::graph;
use super::params::{ParamSpec, ParamValue, Params, RawValue, check_value};
use super::stage::{Stage, StageSpec};

/// The stages an application offers, plus the keys its `[runtime]` section accepts.
pub struct Registry {
    stages: Vec<Box<dyn Stage>>,
    runtime: &'static [ParamSpec],
}

impl Registry {
    pub fn new(runtime: &'static [ParamSpec]) -> Self {
        Self {
            stages: Vec::new(),
            runtime,
        }
    }

    pub fn with(mut self, stage: impl Stage + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    pub fn get(&self, name: &str) -> Option<&dyn Stage> {
        self.stages
            .iter()
            .find(|s| s.spec().name == name)
            .map(|s| s.as_ref())
    }

    pub fn specs(&self) -> impl Iterator<Item = &'static StageSpec> + '_ {
        self.stages.iter().map(|s| s.spec())
    }

    pub fn runtime_specs(&self) -> &'static [ParamSpec] {
        self.runtime
    }
}

/// A config problem, located in the file where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column.
    pub line: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One stage as configured.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub name: String,
    pub deps: Vec<String>,
    pub params: Params,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub file: PathBuf,
    /// Relative paths in the config are resolved against this directory.
    pub base_dir: PathBuf,
    pub artifacts: PathBuf,
    pub runtime: Params,
    /// In topological order (ties in file order).
    pub stages: Vec<StageConfig>,
}

impl PipelineConfig {
    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Reads and validates `file`.
    pub fn load(file: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: None,
            message: format!("cannot read the pipeline config: {e}"),
        })?;
        let base = super::stage::parent_dir(file);
        Self::parse(&text, file, &base, registry)
    }

    /// Validates config text; `file` is only used in messages.
    pub fn parse(
        text: &str,
        file: &Path,
        base_dir: &Path,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            file: file.to_path_buf(),
            line: span.map(|s| line_col(text, s.start)),
            message,
        };
        let doc = DeTable::parse(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        let doc = doc.get_ref();

        let mut artifacts = PathBuf::from("artifacts");
        let mut runtime_given = BTreeMap::new();
        let mut stage_tables: Vec<(Spanned<String>, &DeTable<'_>)> = Vec::new();

        for (key, value) in doc.iter() {
            match key.get_ref().as_ref() {
                "runtime" => {
                    let table = as_table(value).ok_or_else(|| {
                        err(Some(value.span()), "`runtime` must be a table".into())
                    })?;
                    for (k, v) in table.iter() {
                        let name = k.get_ref().as_ref();
                        if name == "artifacts" {
                            match v.get_ref() {
                                DeValue::String(s) => artifacts = PathBuf::from(s.as_ref()),
                                _ => {
                                    return Err(err(
                                        Some(v.span()),
                                        "runtime.artifacts: expected a string (a directory)".into(),
                                    ));
                                }
                            }
                            continue;
                        }
                        let spec = find_spec(registry.runtime, name).ok_or_else(|| {
                            err(
                                Some(k.span()),
                                unknown(
                                    "runtime key",
                                    name,
                                    registry.runtime.iter().map(|s| s.name).chain(["artifacts"]),
                                ),
                            )
                        })?;
                        let value = check_value(spec, &RawValue::from_de(v.get_ref()))
                            .map_err(|m| err(Some(v.span()), format!("runtime.{name}: {m}")))?;
                        runtime_given.insert(name.to_string(), value);
                    }
                }
                "stages" => {
                    let table = as_table(value).ok_or_else(|| {
                        err(
                            Some(value.span()),
                            "`stages` must be a table of tables".into(),
                        )
                    })?;
                    for (k, v) in table.iter() {
                        let t = as_table(v).ok_or_else(|| {
                            err(
                                Some(v.span()),
                                format!("stages.{}: expected a table", k.get_ref()),
                            )
                        })?;
                        stage_tables.push((Spanned::new(k.span(), k.get_ref().to_string()), t));
                    }
                }
                other => {
                    return Err(err(
                        Some(key.span()),
                        unknown("top-level key", other, ["runtime", "stages"].into_iter()),
                    ));
                }
            }
        }
        if stage_tables.is_empty() {
            return Err(err(None, "no stages: add [stages.<name>] tables".into()));
        }

        let defined: BTreeSet<&str> = stage_tables
            .iter()
            .map(|(n, _)| n.get_ref().as_str())
            .collect();
        let mut stages = Vec::new();
        for (name, table) in &stage_tables {
            let stage = registry.get(name.get_ref()).ok_or_else(|| {
                err(
                    Some(name.span()),
                    unknown("stage", name.get_ref(), registry.specs().map(|s| s.name)),
                )
            })?;
            let spec = stage.spec();
            let mut deps: Vec<String> = Vec::new();
            let mut deps_given = false;
            let mut given = BTreeMap::new();
            for (k, v) in table.iter() {
                match k.get_ref().as_ref() {
                    "deps" => {
                        deps_given = true;
                        let arr = match v.get_ref() {
                            DeValue::Array(a) => a,
                            _ => {
                                return Err(err(
                                    Some(v.span()),
                                    format!(
                                        "stages.{}.deps: expected a list of stage names",
                                        spec.name
                                    ),
                                ));
                            }
                        };
                        for item in arr.iter() {
                            let DeValue::String(d) = item.get_ref() else {
                                return Err(err(
                                    Some(item.span()),
                                    format!(
                                        "stages.{}.deps: expected stage names (strings)",
                                        spec.name
                                    ),
                                ));
                            };
                            if !defined.contains(d.as_ref()) {
                                return Err(err(
                                    Some(item.span()),
                                    format!(
                                        "stages.{}.deps: `{d}` is not a stage of this pipeline{}",
                                        spec.name,
                                        suggest(d, defined.iter().copied())
                                    ),
                                ));
                            }
                            deps.push(d.to_string());
                        }
                    }
                    "params" => {
                        let pt = as_table(v).ok_or_else(|| {
                            err(
                                Some(v.span()),
                                format!("stages.{}.params: expected a table", spec.name),
                            )
                        })?;
                        for (pk, pv) in pt.iter() {
                            let pname = pk.get_ref().as_ref();
                            let pspec = find_spec(spec.params, pname).ok_or_else(|| {
                                err(
                                    Some(pk.span()),
                                    format!(
                                        "stage `{}`: {}",
                                        spec.name,
                                        unknown_param(pname, spec.params)
                                    ),
                                )
                            })?;
                            let value = check_value(pspec, &RawValue::from_de(pv.get_ref()))
                                .map_err(|m| {
                                    err(
                                        Some(pv.span()),
                                        format!("stages.{}.params.{pname}: {m}", spec.name),
                                    )
                                })?;
                            given.insert(pname.to_string(), value);
                        }
                    }
                    other => {
                        return Err(err(
                            Some(k.span()),
                            format!(
                                "stages.{}: {} (parameters go under [stages.{}.params])",
                                spec.name,
                                unknown("key", other, ["deps", "params"].into_iter()),
                                spec.name
                            ),
                        ));
                    }
                }
            }
            // Without `deps`, a stage depends on exactly what it reads; `deps` is there to add
            // ordering-only dependencies, and must then still name every input.
            if !deps_given {
                for needed in spec.inputs.iter().map(|i| i.stage) {
                    if !defined.contains(needed) {
                        return Err(err(
                            Some(name.span()),
                            format!(
                                "stage `{}` reads the outputs of `{needed}`, which this pipeline does not define: add [stages.{needed}]",
                                spec.name
                            ),
                        ));
                    }
                    if !deps.iter().any(|d| d == needed) {
                        deps.push(needed.to_string());
                    }
                }
            }
            for needed in spec.inputs.iter().map(|i| i.stage) {
                if !deps.iter().any(|d| d == needed) {
                    return Err(err(
                        Some(name.span()),
                        format!(
                            "stage `{}` reads the outputs of `{needed}`, so its deps must list \"{needed}\"",
                            spec.name
                        ),
                    ));
                }
            }
            stages.push(StageConfig {
                name: spec.name.to_string(),
                deps,
                params: Params::with_defaults(spec.params, given),
            });
        }

        let order = graph::topo_order(&stages).map_err(|cycle| {
            let first = stage_tables
                .iter()
                .find(|(n, _)| n.get_ref() == &cycle[0])
                .map(|(n, _)| n.span());
            err(
                first,
                format!("the stages form a cycle: {}", cycle.join(" → ")),
            )
        })?;
        let stages = order.into_iter().map(|i| stages[i].clone()).collect();

        Ok(PipelineConfig {
            file: file.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            artifacts: super::stage::resolve_path(base_dir, &artifacts.to_string_lossy()),
            runtime: Params::with_defaults(registry.runtime, runtime_given),
            stages,
        })
    }

    /// Applies `--set stage.param=value` (or `runtime.key=value`) overrides.
    pub fn apply_sets(&mut self, sets: &[String], registry: &Registry) -> Result<(), ConfigError> {
        for set in sets {
            let err = |m: String| ConfigError {
                file: PathBuf::from("--set"),
                line: None,
                message: format!("{set}: {m}"),
            };
            let (lhs, value) = set
                .split_once('=')
                .ok_or_else(|| err("expected stage.param=value".into()))?;
            let (stage, param) = lhs
                .trim()
                .split_once('.')
                .ok_or_else(|| err("expected stage.param=value".into()))?;
            let raw = RawValue::parse_cli(value.trim());
            if stage == "runtime" {
                let spec = find_spec(registry.runtime, param).ok_or_else(|| {
                    err(unknown(
                        "runtime key",
                        param,
                        registry.runtime.iter().map(|s| s.name),
                    ))
                })?;
                let v = check_value(spec, &raw).map_err(err)?;
                self.runtime.set(param, v);
                continue;
            }
            let spec = registry
                .get(stage)
                .map(|s| s.spec())
                .filter(|_| self.stage(stage).is_some())
                .ok_or_else(|| {
                    err(unknown(
                        "stage",
                        stage,
                        self.stages.iter().map(|s| s.name.as_str()),
                    ))
                })?;
            let pspec = find_spec(spec.params, param).ok_or_else(|| {
                err(format!(
                    "stage `{stage}`: {}",
                    unknown_param(param, spec.params)
                ))
            })?;
            let v: ParamValue = check_value(pspec, &raw).map_err(err)?;
            let sc = self
                .stages
                .iter_mut()
                .find(|s| s.name == stage)
                .expect("checked");
            sc.params.set(param, v);
        }
        Ok(())
    }
}

fn as_table<'a, 'i>(v: &'a Spanned<DeValue<'i>>) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn find_spec<'a>(specs: &'a [ParamSpec], name: &str) -> Option<&'a ParamSpec> {
    specs.iter().find(|s| s.name == name)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    format!(
        "unknown {what} `{name}`{} (known: {})",
        suggest(name, known.iter().copied()),
        known.join(", ")
    )
}

/// An unknown param: the closest name, or else the param whose doc says the name's words
/// (`learning_rate` → `lr`, documented as "peak learning rate").
fn unknown_param(name: &str, specs: &[ParamSpec]) -> String {
    let by_name = suggest(name, specs.iter().map(|p| p.name));
    let hint = if by_name.is_empty() {
        let phrase = name.replace(['_', '-'], " ").to_lowercase();
        specs
            .iter()
            .find(|p| phrase.len() >= 3 && p.doc.to_lowercase().contains(&phrase))
            .map(|p| format!(", did you mean `{}` ({})?", p.name, p.doc))
            .unwrap_or_default()
    } else {
        by_name
    };
    format!(
        "unknown param `{name}`{hint} (known: {})",
        specs.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
    )
}

/// ", did you mean `x`?" for the closest known name within a small edit distance.
pub(crate) fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!(", did you mean `{k}`?"))
        .unwrap_or_default()
}

impl graph::Node for StageConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn deps(&self) -> &[String] {
        &self.deps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::params::{ParamDefault, ParamKind};
    use crate::dag::stage::{RunContext, StageError};

    struct Toy(&'static StageSpec);
    impl Stage for Toy {
        fn spec(&self) -> &'static StageSpec {
            self.0
        }
        fn run(&self, _: &mut RunContext) -> Result<(), StageError> {
            Ok(())
        }
    }
    const A: StageSpec = StageSpec {
        name: "a",
        version: 1,
        about: "",
        inputs: &[],
        params: &[ParamSpec::new(
            "seed",
            ParamKind::Int,
            ParamDefault::Int(1),
            "",
        )],
        outputs: &[],
    };
    const B: StageSpec = StageSpec {
        name: "b",
        version: 1,
        about: "",
        inputs: &[crate::dag::stage::Input::all("a")],
        params: &[],
        outputs: &[],
    };
    const RT: &[ParamSpec] = &[ParamSpec::new(
        "device",
        ParamKind::Str,
        ParamDefault::Str("x"),
        "",
    )];

    fn reg() -> Registry {
        Registry::new(RT).with(Toy(&A)).with(Toy(&B))
    }

    fn parse(t: &str) -> Result<PipelineConfig, ConfigError> {
        PipelineConfig::parse(t, Path::new("p.toml"), Path::new("."), &reg())
    }

    #[test]
    fn valid_config_is_ordered_topologically() {
        let c = parse("[stages.b]\ndeps=[\"a\"]\n[stages.a]\n[stages.a.params]\nseed=3\n").unwrap();
        let names: Vec<_> = c.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.stage("a").unwrap().params.int("seed").unwrap(), 3);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse("[stages.a]\n[stages.a.params]\nsed = 3\n").unwrap_err();
        assert_eq!(e.line, Some((3, 1)));
        assert!(e.message.contains("unknown param `sed`"), "{e}");
        assert!(e.message.contains("did you mean `seed`"), "{e}");
        assert!(e.to_string().starts_with("p.toml:3:1:"), "{e}");

        let e = parse("[stages.a]\n[stages.a.params]\nseed = \"x\"\n").unwrap_err();
        assert!(
            e.message.contains("expected an integer, found a string"),
            "{e}"
        );
        assert_eq!(e.line.unwrap().0, 3);

        let e = parse("[stages.c]\n").unwrap_err();
        assert!(e.message.contains("unknown stage `c`"), "{e}");

        let e = parse("[stages.a]\n[stages.b]\ndeps = []\n").unwrap_err();
        assert!(e.message.contains("deps must list \"a\""), "{e}");

        let e = parse("[stages.b]\n").unwrap_err();
        assert!(
            e.message
                .contains("reads the outputs of `a`, which this pipeline does not define"),
            "{e}"
        );

        let e = parse("[stages.a]\ndeps = [\"b\"]\n[stages.b]\ndeps=[\"a\"]\n").unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");

        let e = parse("[stages.a\n").unwrap_err();
        assert_eq!(e.line.unwrap().0, 1, "{e}");

        let e = parse("[runtime]\ndevise = \"x\"\n[stages.a]\n").unwrap_err();
        assert!(e.message.contains("did you mean `device`"), "{e}");
    }

    #[test]
    fn deps_default_to_what_a_stage_reads() {
        let c = parse("[stages.a]\n[stages.b]\n").unwrap();
        assert_eq!(c.stage("b").unwrap().deps, ["a"]);
        let names: Vec<_> = c.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn sets_override_and_are_checked() {
        let mut c = parse("[stages.a]\n").unwrap();
        c.apply_sets(&["a.seed=7".into()], &reg()).unwrap();
        assert_eq!(c.stage("a").unwrap().params.int("seed").unwrap(), 7);
        assert!(c.apply_sets(&["a.seed=x".into()], &reg()).is_err());
        assert!(c.apply_sets(&["a.nope=1".into()], &reg()).is_err());
        assert!(
            c.apply_sets(&["b.x=1".into()], &reg()).is_err(),
            "b is not in this config"
        );
    }
}
