//! Go `text/template` compatible engine with Sprig's hermetic functions, for commit messages.
//!
//! Flux renders `spec.git.commit.messageTemplate` with Go's `text/template` and
//! `sprig.HermeticTxtFuncMap()`. This crate is a focused engine of its own (lexer, parser,
//! executor) that reproduces what those templates rely on, over a small value model
//! ([`Value`]) that has what `gotmpl` lacks: struct-keyed maps sorted field by field, values
//! that print through a `String()` method yet have fields, and Go's `%v` printing.
//!
//! # Use
//!
//! ```
//! use templates::{Limits, Template, TemplateInput, NamespacedName};
//!
//! let t = Template::parse(templates::COMMIT_TEMPLATE_NAME, "Automation: {{ .AutomationObject }}")?;
//! let input = TemplateInput {
//!     automation: NamespacedName { namespace: "flux-system".into(), name: "podinfo".into() },
//!     ..Default::default()
//! };
//! assert_eq!(t.execute(&input.to_value(), &Limits::default())?, "Automation: flux-system/podinfo");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`render_commit_message`] does parse, execute and the empty-template default in one call;
//! it is what the controller and `update --message-template` use. A template is parsed once and
//! may be executed many times; execution never returns a half-rendered message: any error
//! (including a budget) discards the output.
//!
//! # Go semantics reproduced
//!
//! Actions, pipelines, `$` variables (`:=` and `=`), `if`/`else if`/`else`, `with`/`else with`,
//! `range` over slices, maps (sorted keys; `$k, $v`) and integers, `break`/`continue`,
//! `define`/`template`/`block`, `{{-`/`-}}` trimming, comments, and the builtins `and or not len
//! index print printf println eq ne lt le gt ge html js urlquery call` (`slice` is Sprig's, as
//! Flux's function map overrides the builtin). A missing map key or a field of a missing value
//! prints `<no value>`; `index` of a missing key gives the element type's zero value (`""`).
//! Arguments are checked like Go's reflection-based call: `contains` given an int fails with
//! `wrong type for value; expected string; got int`.
//!
//! # Errors
//!
//! A syntax error is a [`ParseError`] naming line and column
//! (`template: commit message:3:14: function "foo" not defined`; Go prints only the line, the
//! column is extra). An execution error is an [`ExecError`] in Go's format
//! (`template: commit message:1:3: executing "commit message" at <.Nope>: can't evaluate field Nope
//! in type source.TemplateData`), with
//! the column of the node as Go counts it (0-based bytes).
//!
//! # Budgets
//!
//! [`Limits`] are fixed numbers, so a template behaves the same on any machine: evaluation steps
//! (nodes, commands, field lookups, loop iterations, and work inside functions proportional to
//! the bytes or elements they produce), output bytes (1 MiB by default; also caps any single
//! string or list a function builds), and `template` call depth. Over a budget, execution stops
//! with an error whose [`ExecError::budget`] says which.
//!
//! # Data model
//!
//! [`TemplateInput`] is filled by the automation controller from the setters' change report
//! (files → objects → changes, each change with the image of the policy whose marker made it).
//! [`TemplateInput::to_value`] builds the root value, `source.TemplateData`:
//!
//! | expression | Go type | `%v` form |
//! |---|---|---|
//! | `.AutomationObject` | `types.NamespacedName` (fields `.Namespace`, `.Name`) | `ns/name` |
//! | `.Changed` | `update.Result` | `{map[path:map[...]]}` (only `FileChanges` is a field) |
//! | `.Changed.FileChanges` | `map[string]update.ObjectChanges` | `map[deploy.yaml:map[{{{apps/v1 Deployment} {test }}}:[{old new ns:policy}]]]` |
//! | `.Changed.Objects` | `update.ObjectChanges` = `map[ObjectIdentifier][]Change`, same object in several files concatenated | `map[{{{apps/v1 Deployment} {test }}}:[{old new ns:policy}]]` |
//! | `.Changed.Changes` | `[]update.Change`, deduplicated | `[{old new ns:policy}]` |
//! | object key | `update.ObjectIdentifier{ResourceIdentifier{TypeMeta{APIVersion, Kind}, NameMeta{Name, Namespace}}}`, fields promoted (`$obj.Kind`) | `{{{apps/v1 Deployment} {name ns}}}` |
//! | change | `update.Change{OldValue, NewValue, Setter}` | `{old new ns:policy:tag}` |
//! | `.Values` | `map[string]string` (empty when unset; Go's nil map prints the same) | `map[cluster:prod]` |
//! | `.Updated` (legacy) | v1beta1 `update.Result` with field `Files` and methods `Objects`, `Images` | `{map[path:{map[{{{apps/v1 Deployment} {name ns}}}:[ghcr.io/org/app:1.0]]}]}` |
//! | `.Updated.Files` | `map[string]update.FileResult{Objects}` | `map[path:{map[...]}]` |
//! | `.Updated.Objects` | `map[ObjectIdentifier][]ImageRef`, all files merged | `map[{{{apps/v1 Deployment} {name ns}}}:[ghcr.io/org/app:1.0 ...]]` |
//! | `.Updated.Images` | `[]ImageRef`, each (ref, policy) once | `[ghcr.io/org/app:1.0]` |
//! | image ref | `.Identifier` (digest, else tag, else `latest`), `.Repository` (`org/app`, `library/x` on Docker Hub), `.Registry` (`index.docker.io` by default), `.Name` (fully qualified), `.Policy` (`ns/name`), `.String` | the ref used in the update, `name[:tag][@digest]` |
//! | `.Changed.ImageResult` | the same legacy model as `.Updated` | as `.Updated` |
//!
//! Orders are deterministic: files by path, objects by key (APIVersion, Kind, Name, Namespace),
//! changes in document order. Go's `Changes()`, `Objects()` merge order and `Images()` follow map
//! iteration there; ours is one of the orders Go can produce. Every changed marker, including
//! `:tag` and `:name` ones, contributes its policy's image to the legacy model, so an object's
//! list holds one ref per changed marker.
//!
//! Flux today rejects `.Updated` and `.Changed.ImageResult` with a `RemovedTemplateField` stall;
//! this engine renders them through the legacy model (the guide's templates use it).
//!
//! # For the controller and `update --message-template`
//!
//! Fill a [`TemplateInput`]: `automation` from the `ImageUpdateAutomation` (or `--automation
//! NS/NAME`, see [`NamespacedName`]'s `FromStr`), `values` from `messageTemplateValues` (or the
//! `--template-value KEY=VALUE` flags; `None` when none are given), and `files` from the setters'
//! change report with paths relative to the update path; give each [`Change`] the
//! [`PolicyImage`] of the policy named by its setter (`status.latestRef` and the policy's
//! namespace/name) so the legacy model can be rendered. Then call [`render_commit_message`] with
//! [`Limits::default()`]: `Err(Error::Parse)` and `Err(Error::Exec)` display as Flux's
//! `unable to create commit message template from spec: ...` and
//! `failed to run template from spec: ...`; on error nothing must be committed.
//!
//! # Known differences from Go
//!
//! - Parse errors carry a column; nesting of control structures and parentheses is limited to
//!   100 levels (Go: 10000), template calls to [`Limits::max_depth`].
//! - Orders Go leaves to map iteration (`.Changed.Changes`, Sprig `keys`/`values`) are sorted.
//! - An integral float constant is accepted where an `int` parameter is expected.
//! - Image refs compare by their string in `eq` (Go compares reference and policy).
//!
//! # Sprig functions
//!
//! Provided (Sprig v3 semantics; `must*` variants fail where the plain ones do):
//! strings `hello trim trimAll trimall trimPrefix trimSuffix upper lower title nospace initials
//! repeat substr trunc abbrev contains hasPrefix hasSuffix quote squote cat indent nindent replace
//! plural toString toStrings split splitList splitn join sortAlpha`; hashes `sha1sum sha256sum
//! adler32sum`; encoding `b64enc b64dec toJson mustToJson toPrettyJson mustToPrettyJson toRawJson
//! mustToRawJson fromJson mustFromJson`; numbers `atoi int int64 float64 toDecimal add1 add sub mul
//! div mod max biggest min ceil floor round until untilStep seq`; logic and types `default empty
//! coalesce all any ternary fail typeOf typeIs kindOf kindIs deepEqual`; paths `base dir clean
//! ext isAbs`; lists `list tuple first rest last initial append push prepend concat reverse uniq
//! compact without has slice chunk` (+ `must*`); dicts `dict get hasKey keys values pluck pick
//! omit dig`; regular expressions `regexMatch regexFind regexFindAll regexReplaceAll
//! regexReplaceAllLiteral regexSplit regexQuoteMeta` (+ `must*`).
//!
//! Not provided (a template using one fails to parse: the function is not defined):
//! - excluded by Flux (non-hermetic): `date date_in_zone date_modify now htmlDate htmlDateInZone
//!   dateInZone dateModify randAlphaNum randAlpha randAscii randNumeric randBytes uuidv4 env
//!   expandenv getHostByName`;
//! - time-dependent or random, so not reproducible in a commit: `ago duration durationRound
//!   toDate mustToDate unixEpoch dateModify mustDateModify must_date_modify randInt shuffle`;
//! - cryptographic generators and ciphers: `bcrypt htpasswd genPrivateKey derivePassword
//!   buildCustomCert genCA genCAWithKey genSelfSignedCert genSelfSignedCertWithKey genSignedCert
//!   genSignedCertWithKey encryptAES decryptAES`;
//! - mutating dicts (values here are immutable): `set unset merge mergeOverwrite mustMerge
//!   mustMergeOverwrite deepCopy mustDeepCopy`;
//! - others: `untitle snakecase camelcase kebabcase swapcase wrap wrapWith abbrevboth b32enc
//!   b32dec osBase osClean osDir osExt osIsAbs semver semverCompare urlParse urlJoin addf add1f
//!   subf mulf divf maxf minf sha512sum`.

mod exec;
mod funcs;
mod gofmt;
mod json;
mod model;
mod parse;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use model::{
    Change, FileChanges, NamespacedName, ObjectChanges, ObjectId, PolicyImage, TemplateInput,
};
pub use parse::ParseError;
pub use value::{Field, FieldKind, List, Map, Struct, Value};

/// The template name Flux uses, which appears in error messages.
pub const COMMIT_TEMPLATE_NAME: &str = "commit message";

/// The commit message Flux uses when `messageTemplate` is empty.
pub const DEFAULT_COMMIT_MESSAGE: &str = "Update from image update automation";

/// Fixed execution budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum evaluation steps.
    pub max_steps: u64,
    /// Maximum output bytes; also caps any single value a function builds.
    pub max_output: usize,
    /// Maximum nesting of `template` calls.
    pub max_depth: usize,
}

impl Default for Limits {
    /// One million steps, 1 MiB of output, 100 nested template calls.
    fn default() -> Self {
        Limits {
            max_steps: 1_000_000,
            max_output: 1 << 20,
            max_depth: 100,
        }
    }
}

/// Which budget an execution exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetKind {
    /// Evaluation steps.
    Steps,
    /// Output size (or the size of a value being built).
    Output,
    /// Nesting of template calls or of built values.
    Depth,
}

/// An error while executing a template, in Go's format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ExecError {
    /// Name the template was parsed under.
    pub name: String,
    /// Name of the (possibly `define`d) template being executed.
    pub template: String,
    /// 1-based line of the failing node (0 when unknown).
    pub line: usize,
    /// 0-based byte column of the failing node, as Go counts it.
    pub column: usize,
    /// Source form of the failing node, e.g. `.Updated.Files`.
    pub context: Option<String>,
    /// What went wrong.
    pub message: String,
    /// Set when a budget was exceeded.
    pub budget: Option<BudgetKind>,
}

impl ExecError {
    fn render(&self) -> String {
        match &self.context {
            Some(ctx) => format!(
                "template: {}:{}:{}: executing {} at <{}>: {}",
                self.name,
                self.line,
                self.column,
                gofmt::quote(&self.template),
                ctx,
                self.message
            ),
            None => format!("template: {}: {}", self.template, self.message),
        }
    }
}

/// Parsing or execution failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The template does not parse.
    #[error("unable to create commit message template from spec: {0}")]
    Parse(#[from] ParseError),
    /// The template failed while executing.
    #[error("failed to run template from spec: {0}")]
    Exec(#[from] ExecError),
}

/// A function added to a [`FuncMap`]: it gets the evaluated arguments and returns a value, or
/// an error message that execution reports as `error calling NAME: MESSAGE`.
pub type ExtraFunc = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Extra {
    Func(ExtraFunc),
    Include,
}

/// Functions added to the builtins and Sprig functions, like Go's `Template.Funcs`: an added
/// name replaces a provided function of the same name (`and` and `or` excepted). Used by tools
/// that render other template dialects with this engine, e.g. Helm charts (`toYaml`, `include`).
///
/// ```
/// use templates::{FuncMap, Limits, Template, Value};
///
/// let mut funcs = FuncMap::new();
/// funcs.insert("shout", |args: &[Value]| match args {
///     [Value::Str(s)] => Ok(Value::str(s.to_uppercase())),
///     _ => Err("want one string".to_string()),
/// });
/// funcs.insert_include("include");
/// let t = Template::parse_with_funcs(
///     "t",
///     r#"{{define "hi"}}hi {{.}}{{end}}{{include "hi" "you" | shout}}"#,
///     &funcs,
/// )?;
/// assert_eq!(t.execute(&Value::Nil, &Limits::default())?, "HI YOU");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct FuncMap {
    funcs: HashMap<String, Extra>,
}

impl FuncMap {
    /// An empty map: templates see only the provided functions.
    pub fn new() -> Self {
        FuncMap::default()
    }

    /// Adds (or replaces) the function `name`.
    pub fn insert(
        &mut self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.funcs
            .insert(name.to_string(), Extra::Func(Arc::new(f)));
        self
    }

    /// Adds `name` as Helm's `include`: `NAME "tpl" DOT` executes the `define`d template `tpl`
    /// with `DOT` and returns its output as a string (so it can be piped, unlike `template`).
    /// It shares the caller's step and depth budgets.
    pub fn insert_include(&mut self, name: &str) -> &mut Self {
        self.funcs.insert(name.to_string(), Extra::Include);
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Extra> {
        self.funcs.get(name)
    }
}

impl fmt::Debug for FuncMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.funcs.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("FuncMap").field("names", &names).finish()
    }
}

/// A parsed template, ready to execute any number of times.
#[derive(Clone, Debug)]
pub struct Template {
    name: String,
    text: Arc<str>,
    tree: Arc<parse::Tree>,
    funcs: Arc<FuncMap>,
}

impl Template {
    /// Parses `text` under `name` (Flux uses [`COMMIT_TEMPLATE_NAME`]).
    pub fn parse(name: &str, text: &str) -> Result<Template, ParseError> {
        Template::parse_with_funcs(name, text, &FuncMap::new())
    }

    /// Parses `text` under `name` with `funcs` available besides the provided functions.
    pub fn parse_with_funcs(
        name: &str,
        text: &str,
        funcs: &FuncMap,
    ) -> Result<Template, ParseError> {
        let tree = parse::parse(name, text, &|f| {
            funcs.get(f).is_some() || funcs::lookup(f).is_some()
        })?;
        Ok(Template {
            name: name.to_string(),
            text: text.into(),
            tree: Arc::new(tree),
            funcs: Arc::new(funcs.clone()),
        })
    }

    /// The name the template was parsed under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes the template against `data` within `limits`; on error nothing is returned.
    pub fn execute(&self, data: &Value, limits: &Limits) -> Result<String, ExecError> {
        exec::Exec::new(&self.tree, &self.name, &self.text, &self.funcs, limits).run(data)
    }
}

/// Names of all functions a template may call (Go builtins and the Sprig functions provided).
pub fn function_names() -> Vec<&'static str> {
    funcs::names()
}

/// Renders a commit message as Flux does: an empty template gives [`DEFAULT_COMMIT_MESSAGE`],
/// otherwise the template named [`COMMIT_TEMPLATE_NAME`] is executed against `input`.
pub fn render_commit_message(
    template: &str,
    input: &TemplateInput,
    limits: &Limits,
) -> Result<String, Error> {
    if template.is_empty() {
        return Ok(DEFAULT_COMMIT_MESSAGE.to_string());
    }
    let t = Template::parse(COMMIT_TEMPLATE_NAME, template)?;
    Ok(t.execute(&input.to_value(), limits)?)
}
