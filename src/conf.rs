//! Asterisk's configuration-file loader (`config_text_file_load()` /
//! `process_text_line()` in `main/config.c`), for any `.conf` file.
//!
//! This module owns everything above the single line: categories and their
//! options (`(!)` templates, `(base,…)` inheritance, `(+)` appends), variables
//! (`=`, `=>`, `+=`), the `#include` / `#tryinclude` / `#exec` directives with
//! glob expansion and Asterisk's include-depth limit, and lookups with
//! Asterisk's precedence rules. Comment removal and the split of a line come
//! from [`crate::dialect`]. It never runs a command and never panics on input.
//!
//! Where Asterisk has a surprising rule it is kept, because vmtool must see
//! the configuration the way Asterisk does:
//! * a relative `#include` is relative to the config directory (the directory
//!   of the top-level file), not to the including file;
//! * `[a](t1, t2)` looks up a base named `" t2"` (tokens are not trimmed);
//! * an error inside an *included* file stops that file only: what was read
//!   before the error is kept and the including file goes on (a warning is
//!   recorded); an error in the top-level file fails the load;
//! * after an `#include`, the including file keeps adding to the category it
//!   was in before the directive, even if the included file opened others.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::dialect::{
    ast_strip, classify, clean_line, lines, split_var, CommentState, Line, VarProblem,
};

/// Asterisk's `MAX_INCLUDE_LEVEL`: ten files deep below the top-level one.
pub const MAX_INCLUDE_LEVEL: usize = 10;
/// Asterisk stores category names in `char[80]`.
const CATEGORY_NAME_SIZE: usize = 80;
/// Not in Asterisk: bounds the work when includes fan out (a file that
/// `#tryinclude`s itself twice would otherwise be read 2^10 times).
const MAX_FILES_READ: usize = 1000;
/// Not in Asterisk: bounds the variables inheritance can copy (each
/// `[c](b,b)` doubles `b`'s, so a few lines could otherwise ask for 2^n).
const MAX_VARS: usize = 500_000;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A loaded configuration: every category in file order, templates included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFile {
    pub categories: Vec<Category>,
    /// What Asterisk would log as a warning; none of them stops the load.
    pub warnings: Vec<String>,
}

/// One `[name]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    /// Declared with `(!)`: invisible to lookups, usable as a base.
    pub template: bool,
    pub vars: Vec<Var>,
    pub file: PathBuf,
    pub line: usize,
}

/// One `key = value` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: String,
    /// The value's bytes when they are not UTF-8 (`value` has U+FFFD there).
    pub raw: Option<Vec<u8>>,
    /// Written as `key => value`.
    pub object: bool,
    /// Copied from a base category by `[name](base)`.
    pub inherited: bool,
    /// Where the line is (for an inherited var: where the base defines it).
    pub file: PathBuf,
    pub line: usize,
}

/// What to do with `#exec`, which would run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecPolicy {
    /// Fail the load: Asterisk may run the command (`execincludes = yes`) and
    /// vmtool cannot know what it would print.
    #[default]
    Refuse,
    /// Skip the line with a warning, as Asterisk does when `asterisk.conf`
    /// `[options] execincludes` is not true (its default).
    Ignore,
}

/// Options for [`load_with`] / [`parse_bytes_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub exec: ExecPolicy,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read {}: {source} (check the path and its permissions)", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {reason}; Asterisk stops at this line and rejects the file, fix it", .path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}:{line}: #include \"{target}\" names no readable file; Asterisk rejects the file, create it or use #tryinclude", .path.display())]
    MissingInclude {
        path: PathBuf,
        line: usize,
        target: String,
    },
    #[error("{}:{line}: #include \"{target}\" goes deeper than {MAX_INCLUDE_LEVEL} nested files (an include loop?); Asterisk refuses it, remove the loop", .path.display())]
    IncludeTooDeep {
        path: PathBuf,
        line: usize,
        target: String,
    },
    #[error("{}:{line}: cannot evaluate #exec (vmtool never runs commands); replace it with an #include of the command's output", .path.display())]
    Exec { path: PathBuf, line: usize },
    #[error("{}:{line}: {what} is not supported by vmtool; simplify this line", .path.display())]
    Unsupported {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{}:{line}: more than {MAX_FILES_READ} files read through #include; check for includes that repeat", .path.display())]
    TooManyIncludes { path: PathBuf, line: usize },
}

impl ConfError {
    /// True when the cause is a file that does not exist (top-level file only).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True for errors that come from vmtool's own limits (`#exec`, regex
    /// filters, include budget) rather than from a file Asterisk would reject.
    pub fn is_vmtool_limit(&self) -> bool {
        matches!(
            self,
            ConfError::Exec { .. }
                | ConfError::Unsupported { .. }
                | ConfError::TooManyIncludes { .. }
        )
    }
}

/// Loads `path` as Asterisk would, refusing `#exec`; relative includes are
/// resolved against the directory of `path`.
pub fn load(path: &Path) -> Result<ConfFile, ConfError> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with explicit options.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<ConfFile, ConfError> {
    let data = crate::fsutil::read_config(path).map_err(|source| ConfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    parse_bytes_with(&data, path, dir, opts)
}

/// Parses `data` as the top-level file `origin` (used in messages and in
/// [`Var::file`]); `#include` resolves relative names against `config_dir`.
pub fn parse_bytes(data: &[u8], origin: &Path, config_dir: &Path) -> Result<ConfFile, ConfError> {
    parse_bytes_with(data, origin, config_dir, &LoadOptions::default())
}

/// [`parse_bytes`] with explicit options.
pub fn parse_bytes_with(
    data: &[u8],
    origin: &Path,
    config_dir: &Path,
    opts: &LoadOptions,
) -> Result<ConfFile, ConfError> {
    let mut loader = Loader {
        config_dir: config_dir.to_path_buf(),
        opts: *opts,
        categories: Vec::new(),
        warnings: Vec::new(),
        current: None,
        level: 1,
        files_read: 1,
        vars: 0,
    };
    let mut comments = CommentState::default();
    match loader.process_file(data, origin, &mut comments, false) {
        Ok(()) => {}
        Err(Stop::Invalid(e) | Stop::Hard(e)) => return Err(e),
    }
    if comments.in_comment() {
        loader.warn(
            origin,
            None,
            "unterminated ;-- block comment; the rest of the file was ignored",
        );
    }
    Ok(ConfFile {
        categories: loader.categories,
        warnings: loader.warnings,
    })
}

impl ConfFile {
    /// Non-template categories named `name` (case-insensitive), in file order.
    pub fn categories_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Category> + 'a {
        self.categories
            .iter()
            .filter(move |c| !c.template && c.name.eq_ignore_ascii_case(name))
    }

    /// The category Asterisk's lookups use: the first non-template one named `name`.
    pub fn category(&self, name: &str) -> Option<&Category> {
        self.categories
            .iter()
            .find(|c| !c.template && c.name.eq_ignore_ascii_case(name))
    }

    /// Non-template categories in file order (`ast_category_browse()`).
    pub fn browse(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter().filter(|c| !c.template)
    }

    /// `ast_variable_retrieve()`: first non-template category `category`,
    /// last variable named `key` in it (both case-insensitive).
    pub fn get(&self, category: &str, key: &str) -> Option<&str> {
        self.category(category)?.get(key)
    }
}

impl Category {
    /// Last value of `key` (case-insensitive): a section's own line overrides
    /// what it inherited, as in Asterisk.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|v| v.name.eq_ignore_ascii_case(key))
            .map(|v| v.value.as_str())
    }

    /// Every value of `key` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.vars
            .iter()
            .filter(move |v| v.name.eq_ignore_ascii_case(key))
            .map(|v| v.value.as_str())
    }
}

/// How processing of one file stopped early.
enum Stop {
    /// Asterisk's `CONFIG_STATUS_FILEINVALID` for this file.
    Invalid(ConfError),
    /// vmtool cannot continue at all (it would have to guess).
    Hard(ConfError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IncludeKind {
    Include,
    TryInclude,
}

/// Which categories a lookup accepts (`does_category_match()`'s template rule).
#[derive(Clone, Copy)]
enum Filter {
    NonTemplate,
    Any,
    OnlyTemplates,
    Nothing,
}

impl Filter {
    fn accepts(self, cat: &Category) -> bool {
        match self {
            Filter::NonTemplate => !cat.template,
            Filter::Any => true,
            Filter::OnlyTemplates => cat.template,
            Filter::Nothing => false,
        }
    }
}

struct Loader {
    config_dir: PathBuf,
    opts: LoadOptions,
    categories: Vec<Category>,
    warnings: Vec<String>,
    /// `cfg->current`: the category a newly opened file starts in.
    current: Option<usize>,
    /// `cfg->include_level`.
    level: usize,
    files_read: usize,
    /// Variables stored so far, inherited copies included (see [`MAX_VARS`]).
    vars: usize,
}

/// Where a category header sends the following variables.
enum Target {
    New(Category),
    Existing(usize),
}

impl Loader {
    fn warn(&mut self, file: &Path, line: Option<usize>, msg: impl fmt::Display) {
        let w = match line {
            Some(l) => format!("{}:{l}: {msg}", file.display()),
            None => format!("{}: {msg}", file.display()),
        };
        self.warnings.push(w);
    }

    fn process_file(
        &mut self,
        data: &[u8],
        file: &Path,
        comments: &mut CommentState,
        keep_bom: bool,
    ) -> Result<(), Stop> {
        // Each file starts in the category current in the whole config.
        let mut cat = self.current;
        for (lineno, raw) in lines(data) {
            let Some(raw) = raw else {
                self.warn(
                    file,
                    Some(lineno),
                    "line too long (8191 bytes or more), skipped as Asterisk does",
                );
                continue;
            };
            // Asterisk strips the BOM only on the first line it reads in one
            // #include: a later file of the same glob keeps it.
            let with_bom;
            let raw = if keep_bom && lineno == 1 && data.starts_with(UTF8_BOM) {
                with_bom = [UTF8_BOM, raw].concat();
                &with_bom[..]
            } else {
                raw
            };
            let Some(cleaned) = clean_line(raw, comments) else {
                continue;
            };
            let text = ast_strip(&cleaned);
            if text.is_empty() {
                continue;
            }
            self.process_line(text, lineno, file, &mut cat)?;
        }
        Ok(())
    }

    fn process_line(
        &mut self,
        text: &[u8],
        lineno: usize,
        file: &Path,
        cat: &mut Option<usize>,
    ) -> Result<(), Stop> {
        match text[0] {
            b'[' => self.category_line(text, lineno, file, cat),
            b'#' => self.directive_line(text, lineno, file),
            _ => self.var_line(text, lineno, file, *cat),
        }
    }

    fn syntax(file: &Path, line: usize, reason: impl Into<String>) -> Stop {
        Stop::Invalid(ConfError::Syntax {
            path: file.to_path_buf(),
            line,
            reason: reason.into(),
        })
    }

    fn find_category(&self, name: Option<&str>, filter: Filter) -> Option<usize> {
        self.categories
            .iter()
            .position(|c| name.is_none_or(|n| c.name.eq_ignore_ascii_case(n)) && filter.accepts(c))
    }

    fn category_line(
        &mut self,
        text: &[u8],
        lineno: usize,
        file: &Path,
        cat: &mut Option<usize>,
    ) -> Result<(), Stop> {
        let (full_name, options) = match classify(text) {
            Line::Category { name, options } => (name, options),
            Line::Invalid { reason, .. } => return Err(Self::syntax(file, lineno, reason)),
            other => {
                return Err(Self::syntax(
                    file,
                    lineno,
                    format!("unexpected line {other:?}"),
                ));
            }
        };
        let mut target = Target::New(Category {
            name: c_truncate(&full_name, CATEGORY_NAME_SIZE),
            template: false,
            vars: Vec::new(),
            file: file.to_path_buf(),
            line: lineno,
        });
        // Tokens are taken as written: "(a, b)" names a base called " b".
        for token in options
            .as_deref()
            .map(|o| o.split(','))
            .into_iter()
            .flatten()
        {
            if token.eq_ignore_ascii_case("!") {
                match &mut target {
                    Target::New(c) => c.template = true,
                    Target::Existing(i) => self.categories[*i].template = true,
                }
            } else if let Some(filter) = token.strip_prefix('+') {
                let filter = parse_filter(filter).map_err(|what| {
                    Stop::Hard(ConfError::Unsupported {
                        path: file.to_path_buf(),
                        line: lineno,
                        what,
                    })
                })?;
                let Some(idx) = self.find_category(Some(&full_name), filter) else {
                    return Err(Self::syntax(
                        file,
                        lineno,
                        format!("[{full_name}](+) appends to a category that does not exist"),
                    ));
                };
                if let Target::New(new) = std::mem::replace(&mut target, Target::Existing(idx)) {
                    self.current = Some(idx);
                    let existing = &mut self.categories[idx];
                    existing.template |= new.template;
                    existing.vars.extend(new.vars);
                }
            } else {
                // An empty token has no name to compare: Asterisk takes the first category.
                let name = (!token.is_empty()).then_some(token);
                let Some(base) = self.find_category(name, Filter::Any) else {
                    return Err(Self::syntax(
                        file,
                        lineno,
                        format!(
                            "[{full_name}] inherits from '{token}', which is not defined above"
                        ),
                    ));
                };
                if self.vars + self.categories[base].vars.len() > MAX_VARS {
                    return Err(Stop::Hard(ConfError::Unsupported {
                        path: file.to_path_buf(),
                        line: lineno,
                        what: format!("inheritance that makes more than {MAX_VARS} variables"),
                    }));
                }
                let copies: Vec<Var> = self.categories[base]
                    .vars
                    .iter()
                    .map(|v| Var {
                        inherited: true,
                        ..v.clone()
                    })
                    .collect();
                self.vars += copies.len();
                match &mut target {
                    Target::New(c) => c.vars.extend(copies),
                    Target::Existing(i) => self.categories[*i].vars.extend(copies),
                }
            }
        }
        let idx = match target {
            Target::New(c) => {
                self.categories.push(c);
                let idx = self.categories.len() - 1;
                self.current = Some(idx);
                idx
            }
            Target::Existing(idx) => idx,
        };
        *cat = Some(idx);
        Ok(())
    }

    fn directive_line(&mut self, text: &[u8], lineno: usize, file: &Path) -> Result<(), Stop> {
        let Line::Directive { name, arg } = classify(text) else {
            return Err(Self::syntax(file, lineno, "malformed directive"));
        };
        let kind = if name.eq_ignore_ascii_case("include") {
            IncludeKind::Include
        } else if name.eq_ignore_ascii_case("tryinclude") {
            IncludeKind::TryInclude
        } else if name.eq_ignore_ascii_case("exec") {
            return match self.opts.exec {
                ExecPolicy::Refuse => Err(Stop::Hard(ConfError::Exec {
                    path: file.to_path_buf(),
                    line: lineno,
                })),
                ExecPolicy::Ignore => {
                    self.warn(
                        file,
                        Some(lineno),
                        "#exec ignored (execincludes is off, as in Asterisk)",
                    );
                    Ok(())
                }
            };
        } else {
            self.warn(
                file,
                Some(lineno),
                format!("unknown directive '#{name}', ignored"),
            );
            return Ok(());
        };
        let Some(target) = arg else {
            self.warn(
                file,
                Some(lineno),
                format!("directive '#{name}' needs a file name, ignored"),
            );
            return Ok(());
        };
        self.include(&target, kind, file, lineno)
    }

    fn include(
        &mut self,
        target: &str,
        kind: IncludeKind,
        file: &Path,
        lineno: usize,
    ) -> Result<(), Stop> {
        if self.level > MAX_INCLUDE_LEVEL {
            self.warn(
                file,
                Some(lineno),
                format!("maximum include level ({MAX_INCLUDE_LEVEL}) exceeded by \"{target}\""),
            );
            return match kind {
                IncludeKind::TryInclude => Ok(()),
                IncludeKind::Include => Err(Stop::Invalid(ConfError::IncludeTooDeep {
                    path: file.to_path_buf(),
                    line: lineno,
                    target: target.to_string(),
                })),
            };
        }
        self.level += 1;
        // Asterisk builds "<config dir>/<name>" for every relative name.
        let pattern = if target.starts_with('/') {
            PathBuf::from(target)
        } else {
            self.config_dir.join(target)
        };
        let mut comments = CommentState::default();
        let mut opened = 0usize;
        let mut invalid = None;
        for path in expand_pattern(&pattern) {
            match fs::metadata(&path) {
                Err(_) => continue,
                Ok(m) if !m.is_file() => {
                    self.warn(&path, None, "not a regular file, ignored");
                    continue;
                }
                Ok(_) => {}
            }
            // Checked again on what is opened: the file may be swapped meanwhile.
            let data = match crate::fsutil::read_config(&path) {
                Ok(d) => d,
                Err(e) => {
                    self.warn(&path, None, format!("cannot read included file: {e}"));
                    continue;
                }
            };
            self.files_read += 1;
            if self.files_read > MAX_FILES_READ {
                return Err(Stop::Hard(ConfError::TooManyIncludes {
                    path: file.to_path_buf(),
                    line: lineno,
                }));
            }
            opened += 1;
            // Comment state (like Asterisk's) carries over between files of one glob.
            let result = self.process_file(&data, &path, &mut comments, opened > 1);
            if comments.in_comment() {
                self.warn(&path, None, "unterminated ;-- block comment");
            }
            match result {
                Ok(()) => {}
                Err(Stop::Hard(e)) => return Err(Stop::Hard(e)),
                Err(Stop::Invalid(e)) => {
                    invalid = Some(e);
                    break;
                }
            }
        }
        if opened == 0 {
            self.level -= 1;
            return match kind {
                IncludeKind::TryInclude => Ok(()),
                IncludeKind::Include => Err(Stop::Invalid(ConfError::MissingInclude {
                    path: file.to_path_buf(),
                    line: lineno,
                    target: target.to_string(),
                })),
            };
        }
        if let Some(e) = invalid {
            // Asterisk ignores an included file's failure: it keeps what was
            // read and goes on (and never lowers its include level again).
            self.warn(
                file,
                Some(lineno),
                format!("included file stopped early ({e}); Asterisk still keeps what it read before that line and continues here"),
            );
            return Ok(());
        }
        self.level -= 1;
        Ok(())
    }

    fn var_line(
        &mut self,
        text: &[u8],
        lineno: usize,
        file: &Path,
        cat: Option<usize>,
    ) -> Result<(), Stop> {
        let Some(cat) = cat else {
            return Err(Self::syntax(file, lineno, "variable before any [category]"));
        };
        let parts = match split_var(text) {
            Ok(p) => p,
            Err(VarProblem::BadEscape) => {
                return Err(Self::syntax(
                    file,
                    lineno,
                    "invalid escape: '\\' must be followed by a visible character",
                ));
            }
            Err(VarProblem::NoEquals) => {
                self.warn(file, Some(lineno), "no '=' (equal sign), line ignored");
                return Ok(());
            }
        };
        let key = lossy(parts.key);
        if parts.append {
            let vars = &mut self.categories[cat].vars;
            // The lookup is case-sensitive here, unlike everywhere else.
            if let Some(replace) = vars.iter().rposition(|v| v.name == key) {
                let old_value = vars[replace].value.clone();
                let old_name = vars[replace].name.clone();
                let mut joined = vars[replace]
                    .raw
                    .clone()
                    .unwrap_or_else(|| old_value.clone().into_bytes());
                joined.extend_from_slice(parts.raw_value);
                let joined_bytes = ast_strip(&joined);
                let joined = lossy(joined_bytes);
                let joined_raw = not_utf8(joined_bytes);
                // ast_variable_update(): the last var with that name (any case) and
                // that old value (any case) gets the result.
                let slot = vars.iter().rposition(|v| {
                    v.name.eq_ignore_ascii_case(&old_name)
                        && (old_value.is_empty() || v.value.eq_ignore_ascii_case(&old_value))
                });
                if let Some(slot) = slot {
                    let v = &mut vars[slot];
                    v.name = old_name;
                    v.value = joined;
                    v.raw = joined_raw;
                    v.inherited = false;
                }
                return Ok(());
            }
        }
        if key.is_empty() {
            self.warn(file, Some(lineno), "no variable name, line ignored");
            return Ok(());
        }
        self.vars += 1;
        self.categories[cat].vars.push(Var {
            name: key,
            value: lossy(parts.value()),
            raw: not_utf8(parts.value()),
            object: parts.object,
            inherited: false,
            file: file.to_path_buf(),
            line: lineno,
        });
        Ok(())
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The bytes, kept only when they are not UTF-8 (`lossy` changed them).
fn not_utf8(b: &[u8]) -> Option<Vec<u8>> {
    std::str::from_utf8(b).is_err().then(|| b.to_vec())
}

/// `c_truncate` on bytes: what Asterisk keeps of a value that is not UTF-8.
pub(crate) fn c_truncate_bytes(b: &[u8], size: usize) -> Vec<u8> {
    b[..b.len().min(size.saturating_sub(1))].to_vec()
}

/// `ast_copy_string()` into a `char[size]`: at most `size - 1` bytes (cut on a
/// character boundary, since the result must stay UTF-8).
pub(crate) fn c_truncate(s: &str, size: usize) -> String {
    let max = size.saturating_sub(1);
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The filter after `+` in `[name](+filter)` (items joined by `&`).
fn parse_filter(filter: &str) -> Result<Filter, String> {
    if filter.is_empty() {
        return Ok(Filter::NonTemplate);
    }
    let (mut expressions, mut found, mut template_ok, mut only_templates) = (0, 0, false, false);
    for item in filter.split('&') {
        expressions += 1;
        let item = item.trim();
        let Some((name, value)) = item.split_once('=') else {
            return Ok(Filter::Nothing);
        };
        let (name, value) = (name.trim(), value.split('=').next().unwrap_or("").trim());
        if name == "TEMPLATES" {
            if value.eq_ignore_ascii_case("include") {
                template_ok = true;
                found += 1;
            } else if value.eq_ignore_ascii_case("restrict") {
                template_ok = true;
                only_templates = true;
                found += 1;
            }
            continue;
        }
        return Err(format!("category filter '{item}' (a regular expression)"));
    }
    Ok(match (found == expressions, template_ok, only_templates) {
        (false, _, _) => Filter::Nothing,
        (true, _, true) => Filter::OnlyTemplates,
        (true, true, false) => Filter::Any,
        (true, false, false) => Filter::NonTemplate,
    })
}

/// `glob(GLOB_NOMAGIC | GLOB_BRACE)`: brace alternatives in order, each
/// pattern's matches sorted; a pattern without wildcards is returned as is.
fn expand_pattern(pattern: &Path) -> Vec<PathBuf> {
    let text = pattern.to_string_lossy();
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut out = Vec::new();
    for alt in brace_expand(&text) {
        if !alt.contains(['*', '?', '[']) {
            out.push(PathBuf::from(alt));
            continue;
        }
        match glob::glob_with(&alt, options) {
            Ok(paths) => out.extend(paths.filter_map(Result::ok)),
            // glibc takes an unparsable pattern (e.g. a lone '[') literally.
            Err(_) => out.push(PathBuf::from(alt)),
        }
    }
    out
}

/// Shell-style `{a,b}` expansion, nested braces allowed; an unbalanced brace is literal.
fn brace_expand(s: &str) -> Vec<String> {
    let bytes = s.as_bytes();
    let Some(open) = bytes.iter().position(|&b| b == b'{') else {
        return vec![s.to_string()];
    };
    let mut depth = 0usize;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![s.to_string()];
    };
    let (prefix, suffix) = (&s[..open], &s[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &s[w[0] + 1..w[1]];
        out.extend(brace_expand(&format!("{prefix}{alt}{suffix}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConfFile {
        parse_bytes(
            s.as_bytes(),
            Path::new("test.conf"),
            Path::new("/nonexistent"),
        )
        .unwrap()
    }

    fn parse_err(s: &str) -> ConfError {
        parse_bytes(
            s.as_bytes(),
            Path::new("test.conf"),
            Path::new("/nonexistent"),
        )
        .unwrap_err()
    }

    fn values<'a>(c: &'a Category, key: &'a str) -> Vec<&'a str> {
        c.get_all(key).collect()
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn categories_and_lookup_rules() {
        let c = parse("[General]\nA = 1\na = 2\n[general]\na = 3\n");
        assert_eq!(c.categories.len(), 2);
        // First category wins, last var wins, both case-insensitive.
        assert_eq!(c.get("GENERAL", "A"), Some("2"));
        assert_eq!(c.categories_named("general").count(), 2);
        assert_eq!(values(&c.categories[0], "a"), ["1", "2"]);
        assert_eq!(c.get("general", "missing"), None);
        assert_eq!(c.get("nope", "a"), None);
        // Category names are not trimmed.
        let c = parse("[ spaced ]\nk=v\n");
        assert_eq!(c.categories[0].name, " spaced ");
        assert_eq!(c.get("spaced", "k"), None);
    }

    #[test]
    fn object_flag_and_values() {
        let c = parse("[c]\n1101 => 1234, Utilisateur1\nk=v=w\nk2 =>\n");
        let v = &c.categories[0].vars;
        assert_eq!(
            (v[0].name.as_str(), v[0].value.as_str(), v[0].object),
            ("1101", "1234, Utilisateur1", true)
        );
        assert_eq!(
            (v[1].name.as_str(), v[1].value.as_str(), v[1].object),
            ("k", "v=w", false)
        );
        assert_eq!((v[2].value.as_str(), v[2].object), ("", true));
        assert_eq!((v[0].line, v[1].line), (2, 3));
    }

    #[test]
    fn templates_are_hidden_but_inheritable() {
        let c = parse(
            "[tpl](!)\nhost = dynamic\nallow = ulaw\n[tpl2](!)\nallow = alaw\n\
             [1101](tpl,tpl2)\nallow = g722\nhost = static\n",
        );
        assert_eq!(c.get("tpl", "host"), None);
        assert_eq!(c.browse().count(), 1);
        let box1101 = c.category("1101").unwrap();
        assert_eq!(values(box1101, "allow"), ["ulaw", "alaw", "g722"]);
        assert_eq!(box1101.get("host"), Some("static"));
        assert!(box1101.vars[0].inherited && !box1101.vars[3].inherited);
        assert_eq!(box1101.vars[0].line, 2);
    }

    #[test]
    fn inheritance_quirks() {
        // Tokens are not trimmed: " tpl2" does not exist.
        let e = parse_err("[tpl](!)\na=1\n[tpl2](!)\nb=2\n[x](tpl, tpl2)\n");
        assert!(matches!(e, ConfError::Syntax { line: 5, .. }), "{e}");
        assert!(e.to_string().contains("' tpl2'"), "{e}");
        // A missing base is an error.
        assert!(matches!(
            parse_err("[x](nothere)\n"),
            ConfError::Syntax { line: 1, .. }
        ));
        // A non-template category can be a base too; the base must be above.
        let c = parse("[a]\nk=1\n[b](a)\nk=2\n");
        assert_eq!(values(c.category("b").unwrap(), "k"), ["1", "2"]);
        // (!,tpl): a template that itself inherits.
        let c = parse("[base](!)\nk=1\n[t](!,base)\nj=2\n[u](t)\n");
        assert!(c.categories[1].template);
        assert_eq!(c.get("u", "k"), Some("1"));
        assert_eq!(c.get("u", "j"), Some("2"));
        // Text after ']' that is not '(' is ignored; ')' is required after '('.
        assert_eq!(parse("[a] junk\nk=v\n").get("a", "k"), Some("v"));
        assert!(matches!(parse_err("[a](!\n"), ConfError::Syntax { .. }));
        assert!(matches!(parse_err("[a\n"), ConfError::Syntax { .. }));
    }

    #[test]
    fn append_to_category() {
        let c = parse("[a]\nk=1\n[b]\nx=1\n[A](+)\nk=2\n");
        assert_eq!(c.categories.len(), 2);
        assert_eq!(values(c.category("a").unwrap(), "k"), ["1", "2"]);
        // Missing category is an error; a template is not found by plain (+).
        assert!(matches!(
            parse_err("[a]\n[b](+)\n"),
            ConfError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            parse_err("[t](!)\n[t](+)\n"),
            ConfError::Syntax { .. }
        ));
        let c = parse("[t](!)\nk=1\n[t](+TEMPLATES=include)\nk=2\n");
        assert_eq!(values(&c.categories[0], "k"), ["1", "2"]);
        // Variables inherited before the '+' move to the existing category.
        let c = parse("[tpl](!)\nt=1\n[a]\nk=1\n[a](tpl,+)\nk=2\n");
        assert_eq!(values(c.category("a").unwrap(), "t"), ["1"]);
        assert_eq!(c.category("a").unwrap().vars.len(), 3);
        // Regular-expression filters are not evaluated.
        let e = parse_err("[a]\n[a](+k=v)\n");
        assert!(matches!(e, ConfError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn plus_equals() {
        let c = parse("[c]\nk = a\nk += b\nK += z\nn += new\n");
        let cat = &c.categories[0];
        // The appended text keeps its leading blank; "K" is another name here.
        assert_eq!(values(cat, "k"), ["a b", "z"]);
        assert_eq!(cat.get("n"), Some("new"));
        let c = parse("[c]\nk=\nk+=x\n");
        assert_eq!(c.get("c", "k"), Some("x"));
        let c = parse("[c]\nk=1\nk=2\nk+=3\n");
        assert_eq!(values(&c.categories[0], "k"), ["1", "23"]);
        // Nothing to append to in this category: a normal variable.
        let c = parse("[a]\nk=1\n[b]\nk+=2\n");
        assert_eq!(c.get("b", "k"), Some("2"));
    }

    #[test]
    fn comments_and_escapes() {
        let c = parse(
            "; header\n[c] ; trailing\nk = a\\;b ; note\n;-- block\n[x]\nz=1\n--;\n\
             m = 1 ;-- inline --; 2\n",
        );
        assert_eq!(c.categories.len(), 1);
        assert_eq!(c.get("c", "k"), Some("a;b"));
        assert_eq!(c.get("c", "z"), None);
        assert_eq!(c.get("c", "m"), Some("1  2"));
        let c = parse("[c]\n;-- never closed\nk=1\n");
        assert_eq!(c.get("c", "k"), None);
        assert!(c.warnings.iter().any(|w| w.contains("unterminated")));
        // An escaped first character lets a key start with '=' or ';'.
        let c = parse("[c]\n\\=odd = 1\n");
        assert_eq!(c.get("c", "=odd"), Some("1"));
        assert!(matches!(
            parse_err("[c]\n\\ x=1\n"),
            ConfError::Syntax { line: 2, .. }
        ));
    }

    #[test]
    fn warnings_and_errors() {
        let c = parse("[c]\nnovalue\n=x\nk=v\n#bogus x\n#include\n");
        assert_eq!(c.get("c", "k"), Some("v"));
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("test.conf:2:"));
        let e = parse_err("k=v\n[c]\n");
        assert!(matches!(e, ConfError::Syntax { line: 1, .. }));
        assert!(e.to_string().contains("test.conf:1"), "{e}");
        // Even a line without '=' is fatal before any category.
        assert!(matches!(parse_err("novalue\n"), ConfError::Syntax { .. }));
    }

    #[test]
    fn exec_refused_or_ignored() {
        let e = parse_err("[c]\n#exec /bin/echo\n");
        assert!(matches!(e, ConfError::Exec { line: 2, .. }));
        assert!(e.to_string().contains("cannot evaluate #exec"));
        assert!(e.is_vmtool_limit());
        let opts = LoadOptions {
            exec: ExecPolicy::Ignore,
        };
        let c = parse_bytes_with(
            b"[c]\n#EXEC x\nk=1\n",
            Path::new("t"),
            Path::new("/x"),
            &opts,
        )
        .unwrap();
        assert_eq!(c.get("c", "k"), Some("1"));
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn crlf_bom_and_non_utf8() {
        let c = parse("\u{feff}[c]\r\nk = v \r\n");
        assert_eq!(c.get("c", "k"), Some("v"));
        let c = parse_bytes(b"[c]\nname=Zo\xe9\nk=1\n", Path::new("t"), Path::new("/x")).unwrap();
        assert_eq!(c.get("c", "name"), Some("Zo\u{fffd}"));
        assert_eq!(c.get("c", "k"), Some("1"));
        // Asterisk trims control bytes, not Unicode spaces.
        let c = parse("[c]\nk = \u{a0}v\u{1}\n");
        assert_eq!(c.get("c", "k"), Some("\u{a0}v"));
    }

    #[test]
    fn includes_relative_to_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "sub/inner.conf",
            "[inner]\nfrom = inner\n#include \"leaf.conf\"\n",
        );
        // Relative to the config dir, not to sub/.
        write(d, "leaf.conf", "leaf = yes\n");
        write(d, "sub/leaf.conf", "leaf = wrong\n");
        let top = write(
            d,
            "top.conf",
            "[top]\na=1\n#include \"sub/inner.conf\"\nb=2\n",
        );
        let c = load(&top).unwrap();
        assert_eq!(c.get("inner", "leaf"), Some("yes"));
        assert_eq!(c.get("inner", "from"), Some("inner"));
        // After the include the top file is still in [top].
        assert_eq!(c.get("top", "b"), Some("2"));
        assert_eq!(c.category("inner").unwrap().file, d.join("sub/inner.conf"));
        // Absolute paths are used as they are; <...> quoting works.
        let abs = write(
            d,
            "abs.conf",
            &format!("[x]\n#include <{}>\n", d.join("leaf.conf").display()),
        );
        assert_eq!(load(&abs).unwrap().get("x", "leaf"), Some("yes"));
    }

    #[test]
    fn include_glob_braces_and_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "conf.d/b.conf", "[b]\nk=b\n");
        write(d, "conf.d/a.conf", "[a]\nk=a\n");
        write(d, "conf.d/.hidden.conf", "[hidden]\n");
        write(d, "conf.d/c.txt", "[c]\n");
        let top = write(
            d,
            "top.conf",
            "#include conf.d/*.conf\n#tryinclude \"conf.d/{c.txt,a.conf}\"\n",
        );
        let c = load(&top).unwrap();
        let names: Vec<_> = c.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "a"]);
        // A glob that matches nothing is a missing #include.
        let top = write(d, "empty.conf", "[x]\n#include \"none.d/*.conf\"\n");
        assert!(matches!(
            load(&top).unwrap_err(),
            ConfError::MissingInclude { line: 2, .. }
        ));
    }

    #[test]
    fn missing_include_and_tryinclude() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let top = write(d, "top.conf", "[x]\n#tryinclude \"nope.conf\"\nk=1\n");
        let c = load(&top).unwrap();
        assert_eq!(c.get("x", "k"), Some("1"));
        assert!(c.warnings.is_empty());
        let top = write(d, "top2.conf", "[x]\n#include \"nope.conf\"\nk=1\n");
        let e = load(&top).unwrap_err();
        assert!(
            matches!(&e, ConfError::MissingInclude { line: 2, target, .. } if target == "nope.conf")
        );
        assert!(e.to_string().contains("top2.conf:2"), "{e}");
        // A directory is not a file.
        fs::create_dir(d.join("adir")).unwrap();
        let top = write(d, "top3.conf", "[x]\n#include adir\n");
        assert!(matches!(
            load(&top).unwrap_err(),
            ConfError::MissingInclude { .. }
        ));
        let e = load(&d.join("absent.conf")).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn errors_inside_included_files_are_contained() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "bad.conf", "[bad]\nk=1\n[broken\nk=2\n");
        write(d, "vars.conf", "top_var = 1\n");
        let top = write(
            d,
            "top.conf",
            "[x]\n#include bad.conf\nafter=1\n#include vars.conf\n",
        );
        let c = load(&top).unwrap();
        assert_eq!(c.get("bad", "k"), Some("1"));
        assert_eq!(c.get("x", "after"), Some("1"));
        // The included file starts in the current category: the last one opened.
        assert_eq!(c.get("bad", "top_var"), Some("1"));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("bad.conf:3"), "{:?}", c.warnings);
        // But #exec anywhere fails the load.
        write(d, "exec.conf", "#exec date\n");
        let top = write(d, "top2.conf", "[x]\n#include exec.conf\n");
        assert!(matches!(
            load(&top).unwrap_err(),
            ConfError::Exec { line: 1, .. }
        ));
    }

    #[test]
    fn include_recursion_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Self-include: Asterisk stops at depth 10 and keeps the copies.
        let top = write(d, "loop.conf", "[x]\nk=1\n#include loop.conf\n");
        let c = load(&top).unwrap();
        assert_eq!(c.categories.len(), MAX_INCLUDE_LEVEL + 1);
        assert!(!c.warnings.is_empty());
        let top = write(d, "tryloop.conf", "[x]\n#tryinclude tryloop.conf\n");
        assert_eq!(load(&top).unwrap().categories.len(), MAX_INCLUDE_LEVEL + 1);
        // With #include, a failed file never lowers Asterisk's include level
        // again, so the second #include of every file up the chain is too deep.
        let top = write(
            d,
            "fan.conf",
            "[x]\n#include fan.conf\n#include fan.conf\n#include fan.conf\n",
        );
        assert!(matches!(
            load(&top).unwrap_err(),
            ConfError::IncludeTooDeep { line: 3, .. }
        ));
        // #tryinclude fans out 3^10 times: cut by the file budget.
        let top = write(
            d,
            "tryfan.conf",
            "[x]\n#tryinclude tryfan.conf\n#tryinclude tryfan.conf\n#tryinclude tryfan.conf\n",
        );
        assert!(matches!(
            load(&top).unwrap_err(),
            ConfError::TooManyIncludes { .. }
        ));
    }

    #[test]
    fn bom_only_on_the_first_file_of_a_glob() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "g/a.conf", "\u{feff}[a]\nk=1\n");
        write(d, "g/b.conf", "\u{feff}[b]\nk=2\n");
        let top = write(d, "top.conf", "#include g/*.conf\n");
        let c = load(&top).unwrap();
        // Asterisk reads "\u{feff}[b]" as a line without '=' in [a].
        assert_eq!(c.categories.len(), 1);
        assert_eq!(values(&c.categories[0], "k"), ["1", "2"]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn empty_inheritance_token_takes_the_first_category() {
        let c = parse("[first](!)\nk=1\n[x]()\n");
        assert_eq!(c.get("x", "k"), Some("1"));
        assert!(matches!(parse_err("[x]()\n"), ConfError::Syntax { .. }));
    }

    #[test]
    fn brace_expansion() {
        assert_eq!(brace_expand("a{b,c}d"), ["abd", "acd"]);
        assert_eq!(brace_expand("{x,{y,z}}"), ["x", "y", "z"]);
        assert_eq!(brace_expand("a{b"), ["a{b"]);
        assert_eq!(brace_expand("plain"), ["plain"]);
    }

    #[test]
    fn truncation_of_category_names() {
        let long = "x".repeat(100);
        let c = parse(&format!("[{long}]\nk=v\n"));
        assert_eq!(c.categories[0].name.len(), 79);
        assert_eq!(c_truncate("éé", 4), "é");
    }
}
