//! Syntax tree → typed instructions grouped into stages, with BuildKit's argument checks
//! ("`WORKDIR` requires exactly one argument", "unknown flag: --boo", ONBUILD restrictions).
//!
//! Values stay unexpanded here: which variables are in scope depends on build arguments, so
//! expansion happens when the plan is made. Pure: no I/O.

use std::time::Duration;

use thiserror::Error;

use super::ast::{Heredoc, Node, Span};
use super::parser::{self, ParseError, Parsed, KEYWORDS};

/// An instruction the builder cannot accept, with its line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct InstructionError {
    /// 1-based line of the instruction.
    pub line: usize,
    /// BuildKit's wording of the problem.
    pub message: String,
    /// How to fix it, when there is something specific to say.
    pub hint: Option<String>,
}

/// Either stage of frontend failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrontendError {
    /// The text could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An instruction is malformed.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
}

impl FrontendError {
    /// 1-based line of the problem.
    pub fn line(&self) -> usize {
        match self {
            FrontendError::Parse(e) => e.line,
            FrontendError::Instruction(e) => e.line,
        }
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        match self {
            FrontendError::Parse(e) => &e.message,
            FrontendError::Instruction(e) => &e.message,
        }
    }

    /// A fix, if one is known.
    pub fn hint(&self) -> Option<&str> {
        match self {
            FrontendError::Parse(_) => None,
            FrontendError::Instruction(e) => e.hint.as_deref(),
        }
    }
}

/// A command in exec form (`["a","b"]`) or shell form (`a b`, run through the stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Exec form: the argv; shell form: one element, the command text.
    pub args: Vec<String>,
    /// True for shell form.
    pub shell_form: bool,
}

/// A heredoc used as a COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// Destination file name (the heredoc's name).
    pub name: String,
    /// The body (tabs already stripped for `<<-`).
    pub data: String,
    /// Whether variables in the body are expanded.
    pub expand: bool,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyCmd {
    /// Source paths or URLs as written.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineFile>,
    /// Destination as written.
    pub dest: String,
    /// `--from=stage|image|index`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern` (repeatable).
    pub excludes: Vec<String>,
    /// ADD `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack=bool`.
    pub unpack: Option<bool>,
    /// True for JSON form.
    pub json: bool,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCmd {
    /// The command.
    pub command: Command,
    /// `--mount=...` specs, unexpanded.
    pub mounts: Vec<String>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
    /// Heredocs attached to the line.
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]` as Docker stores it.
    pub test: Vec<String>,
    /// `--interval` (zero = default).
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries`.
    pub retries: u32,
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `ARG name[=default] ...`.
    Arg(Vec<(String, Option<String>)>),
    /// `ENV k=v ...`; values unexpanded, quotes kept.
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`; keys and values unexpanded.
    Label(Vec<(String, String)>),
    /// `RUN`.
    Run(RunCmd),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `COPY`.
    Copy(CopyCmd),
    /// `ADD`.
    Add(CopyCmd),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE` ports, unexpanded.
    Expose(Vec<String>),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: the trigger's text, run in a child build.
    Onbuild(String),
    /// `MAINTAINER` (deprecated; becomes the `author` field).
    Maintainer(String),
}

/// An instruction with its location and original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction.
    pub instruction: Instruction,
    /// Lines it spans.
    pub span: Span,
    /// The logical line as written (for history's `created_by`).
    pub original: String,
}

/// A `FROM` and the instructions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The base as written (`scratch`, an image, another stage, `$VAR`).
    pub base: String,
    /// `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// `--platform=...`, unexpanded.
    pub platform: Option<String>,
    /// Where the FROM is.
    pub span: Span,
    /// Its index among stages.
    pub index: usize,
    /// The instructions of the stage.
    pub steps: Vec<Step>,
}

/// A whole Dockerfile in typed form.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// ARGs before the first FROM (usable in FROM lines only, unless redeclared).
    pub meta_args: Vec<(String, Option<String>)>,
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// The parse result it came from (directives, warnings, escape token).
    pub parsed: Parsed,
}

impl Dockerfile {
    /// Parses and types a Dockerfile.
    pub fn parse(text: &str) -> Result<Dockerfile, FrontendError> {
        let parsed = parser::parse(text)?;
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in parsed.instructions() {
            let kw = node.keyword();
            if kw == "from" {
                let stage = parse_from(node, stages.len())?;
                if let Some(name) = &stage.name {
                    if let Some(prev) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
                        return Err(ierr(
                            node,
                            format!("duplicate stage name {name:?}"),
                            Some(format!(
                                "stage {name:?} is already defined on line {}; rename one of them",
                                prev.span.start
                            )),
                        )
                        .into());
                    }
                }
                stages.push(stage);
                continue;
            }
            let instruction = parse_instruction(node)?;
            match stages.last_mut() {
                Some(stage) => stage.steps.push(Step {
                    instruction,
                    span: node.span,
                    original: node.original.clone(),
                }),
                None => match instruction {
                    Instruction::Arg(args) => meta_args.extend(args),
                    _ => {
                        return Err(ierr(
                            node,
                            format!("no build stage in current context: {} must come after FROM", node.value.to_uppercase()),
                            Some("start the Dockerfile with `FROM <image>` (only ARG may come before it)".into()),
                        )
                        .into())
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(InstructionError {
                line: parsed.root.span.end.max(1),
                message: "the Dockerfile has no FROM instruction".into(),
                hint: Some("add `FROM <image>` (or `FROM scratch`)".into()),
            }
            .into());
        }
        Ok(Dockerfile {
            meta_args,
            stages,
            parsed,
        })
    }

    /// Finds a stage by name (case-insensitive) or index.
    pub fn stage(&self, name_or_index: &str) -> Option<&Stage> {
        let lower = name_or_index.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name_or_index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i))
            })
    }
}

fn ierr(node: &Node, message: impl Into<String>, hint: Option<String>) -> InstructionError {
    InstructionError {
        line: node.span.start,
        message: message.into(),
        hint,
    }
}

/// Parsed `--flag` values of one instruction.
struct Flags<'a> {
    node: &'a Node,
    values: Vec<(String, Option<String>)>,
}

impl<'a> Flags<'a> {
    fn parse(node: &'a Node, allowed: &[&str]) -> Result<Flags<'a>, InstructionError> {
        let mut values = Vec::new();
        for f in &node.flags {
            let body = f.strip_prefix("--").unwrap_or(f);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if !allowed.contains(&name.as_str()) {
                let hint = closest(&name, allowed)
                    .map(|c| format!("did you mean `--{c}`?"))
                    .or_else(|| {
                        Some(if allowed.is_empty() {
                            format!("{} takes no flags", node.value.to_uppercase())
                        } else {
                            format!(
                                "{} accepts --{}",
                                node.value.to_uppercase(),
                                allowed.join(", --")
                            )
                        })
                    });
                return Err(ierr(node, format!("unknown flag: --{name}"), hint));
            }
            values.push((name, value));
        }
        Ok(Flags { node, values })
    }

    fn string(&self, name: &str) -> Result<Option<String>, InstructionError> {
        let mut out = None;
        for (n, v) in &self.values {
            if n == name {
                match v {
                    Some(v) => out = Some(v.clone()),
                    None => {
                        return Err(ierr(
                            self.node,
                            format!("missing a value on flag: --{name}"),
                            Some(format!("write `--{name}=<value>`")),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, InstructionError> {
        let mut out = Vec::new();
        for (n, v) in &self.values {
            if n == name {
                match v {
                    Some(v) => out.push(v.clone()),
                    None => {
                        return Err(ierr(
                            self.node,
                            format!("missing a value on flag: --{name}"),
                            Some(format!("write `--{name}=<value>`")),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, InstructionError> {
        let mut out = None;
        for (n, v) in &self.values {
            if n == name {
                out = Some(match v.as_deref() {
                    None | Some("true") | Some("True") | Some("TRUE") | Some("1") => true,
                    Some("false") | Some("False") | Some("FALSE") | Some("0") => false,
                    Some(other) => {
                        return Err(ierr(
                            self.node,
                            format!("expecting boolean value for flag {name}, not: {other}"),
                            None,
                        ))
                    }
                });
            }
        }
        Ok(out)
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small distance.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&w, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1) + 1 && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

fn parse_from(node: &Node, index: usize) -> Result<Stage, InstructionError> {
    let flags = Flags::parse(node, &["platform"])?;
    let args = node.args();
    let name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => {
            let n = args[2].to_lowercase();
            if !valid_stage_name(&n) {
                return Err(ierr(
                    node,
                    format!("invalid name for build stage: {:?}, name can't start with a number or contain symbols", args[2]),
                    Some("use letters, digits, `-`, `_` and `.`, starting with a letter".into()),
                ));
            }
            Some(n)
        }
        _ => {
            return Err(ierr(
                node,
                "FROM requires either one or three arguments",
                Some("write `FROM <image> [AS <name>]`".into()),
            ))
        }
    };
    Ok(Stage {
        base: args[0].to_string(),
        name,
        platform: flags.string("platform")?,
        span: node.span,
        index,
        steps: Vec::new(),
    })
}

fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn command(node: &Node) -> Command {
    Command {
        args: node.args().into_iter().map(String::from).collect(),
        shell_form: !node.json,
    }
}

fn exactly_one(node: &Node) -> Result<String, InstructionError> {
    let args = node.args();
    if args.len() != 1 {
        return Err(ierr(
            node,
            format!(
                "{} requires exactly one argument",
                node.value.to_uppercase()
            ),
            None,
        ));
    }
    Ok(args[0].to_string())
}

fn at_least_one(node: &Node) -> Result<Vec<String>, InstructionError> {
    let args = node.args();
    if args.is_empty() {
        return Err(ierr(
            node,
            format!(
                "{} requires at least one argument",
                node.value.to_uppercase()
            ),
            None,
        ));
    }
    Ok(args.into_iter().map(String::from).collect())
}

fn pairs(node: &Node) -> Result<Vec<(String, String)>, InstructionError> {
    let kw = node.value.to_uppercase();
    if node.next.is_empty() {
        return Err(ierr(
            node,
            format!("{kw} requires at least one argument"),
            None,
        ));
    }
    let mut out = Vec::new();
    for chunk in node.next.chunks(3) {
        let key = chunk[0].value.clone();
        if key.is_empty() {
            return Err(ierr(node, format!("{kw} names can not be blank"), None));
        }
        let value = chunk.get(1).map(|n| n.value.clone()).unwrap_or_default();
        out.push((key, value));
    }
    Ok(out)
}

/// Whether `s` names a signal the way Docker's `STOPSIGNAL` accepts it: a non-zero number,
/// or a Linux signal name, any case, `SIG` optional (`SIGTERM`, `term`, `RTMIN+3`).
pub fn is_stop_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i64>() {
        return n != 0;
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    // RTMIN+1 ..= RTMIN+15 and RTMAX-14 ..= RTMAX-1.
    let offset = |rest: &str, max: u8| rest.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n));
    match (name.strip_prefix("RTMIN+"), name.strip_prefix("RTMAX-")) {
        (Some(n), _) => !n.starts_with('+') && offset(n, 15),
        (_, Some(n)) => !n.starts_with('+') && offset(n, 14),
        _ => false,
    }
}

/// Types one instruction node (not FROM).
pub fn parse_instruction(node: &Node) -> Result<Instruction, InstructionError> {
    let kw = node.keyword();
    let no_flags = |n: &Node| Flags::parse(n, &[]).map(|_| ());
    Ok(match kw.as_str() {
        "arg" => {
            no_flags(node)?;
            let args = at_least_one(node)?;
            let mut out = Vec::with_capacity(args.len());
            for a in args {
                out.push(match a.split_once('=') {
                    Some(("", _)) => {
                        return Err(ierr(
                            node,
                            "ARG names can not be blank",
                            Some("write ARG NAME or ARG NAME=value".into()),
                        ))
                    }
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a, None),
                });
            }
            Instruction::Arg(out)
        }
        "env" => {
            no_flags(node)?;
            Instruction::Env(pairs(node)?)
        }
        "label" => {
            no_flags(node)?;
            Instruction::Label(pairs(node)?)
        }
        "run" => {
            let flags = Flags::parse(node, &["mount", "network", "security"])?;
            if node.next.is_empty() {
                return Err(ierr(node, "RUN requires at least one argument", None));
            }
            Instruction::Run(RunCmd {
                command: command(node),
                mounts: flags.strings("mount")?,
                network: flags.string("network")?,
                security: flags.string("security")?,
                heredocs: node.heredocs.clone(),
            })
        }
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(command(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint(command(node))
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err(ierr(
                    node,
                    "SHELL requires the arguments to be in JSON form",
                    Some("write `SHELL [\"/bin/bash\", \"-c\"]`".into()),
                ));
            }
            Instruction::Shell(at_least_one(node)?)
        }
        "copy" | "add" => {
            let is_add = kw == "add";
            let allowed: &[&str] = if is_add {
                &[
                    "chown",
                    "chmod",
                    "link",
                    "exclude",
                    "checksum",
                    "keep-git-dir",
                    "unpack",
                ]
            } else {
                &["from", "chown", "chmod", "link", "parents", "exclude"]
            };
            let flags = Flags::parse(node, allowed)?;
            let mut args: Vec<String> = node.args().into_iter().map(String::from).collect();
            if args.len() < 2 {
                return Err(ierr(
                    node,
                    format!(
                        "{} requires at least two arguments, but only {} provided. Destination could not be determined",
                        kw.to_uppercase(),
                        if args.is_empty() { "none was".to_string() } else { "one was".to_string() }
                    ),
                    Some(format!("write `{} <src>... <dest>`", kw.to_uppercase())),
                ));
            }
            let dest = args.pop().expect("len >= 2");
            if !node.json && parser::parse_heredoc(&dest).ok().flatten().is_some() {
                return Err(ierr(
                    node,
                    format!(
                        "{} cannot accept a heredoc as a destination",
                        kw.to_uppercase()
                    ),
                    None,
                ));
            }
            let mut sources = Vec::new();
            let mut inline = Vec::new();
            for src in args {
                let doc = if node.json {
                    None
                } else {
                    parser::parse_heredoc(&src).ok().flatten()
                };
                match doc.and_then(|d| node.heredocs.iter().find(|h| h.name == d.name)) {
                    Some(h) => inline.push(InlineFile {
                        name: h.name.clone(),
                        data: h.body(),
                        expand: h.expand,
                    }),
                    None => sources.push(src),
                }
            }
            if let Some(from) = flags.string("from")? {
                if from.contains('$') {
                    return Err(ierr(node, "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround", None));
                }
            }
            let c = CopyCmd {
                sources,
                inline,
                dest,
                from: flags.string("from")?,
                chown: flags.string("chown")?,
                chmod: flags.string("chmod")?,
                link: flags.bool("link")?.unwrap_or(false),
                parents: flags.bool("parents")?.unwrap_or(false),
                excludes: flags.strings("exclude")?,
                checksum: flags.string("checksum")?,
                keep_git_dir: flags.bool("keep-git-dir")?.unwrap_or(false),
                unpack: flags.bool("unpack")?,
                json: node.json,
            };
            if is_add {
                Instruction::Add(c)
            } else {
                Instruction::Copy(c)
            }
        }
        "workdir" => {
            no_flags(node)?;
            Instruction::Workdir(exactly_one(node)?)
        }
        "user" => {
            no_flags(node)?;
            Instruction::User(exactly_one(node)?)
        }
        "stopsignal" => {
            no_flags(node)?;
            Instruction::StopSignal(exactly_one(node)?)
        }
        "maintainer" => {
            no_flags(node)?;
            Instruction::Maintainer(exactly_one(node)?)
        }
        "expose" => {
            no_flags(node)?;
            Instruction::Expose(at_least_one(node)?)
        }
        "volume" => {
            no_flags(node)?;
            let v = at_least_one(node)?;
            if v.iter().any(|p| p.trim().is_empty()) {
                return Err(ierr(
                    node,
                    "VOLUME specified can not be an empty string",
                    None,
                ));
            }
            Instruction::Volume(v)
        }
        "healthcheck" => parse_healthcheck(node)?,
        "onbuild" => {
            no_flags(node)?;
            let Some(inner) = node.next.first().and_then(|n| n.children.first()) else {
                return Err(ierr(node, "ONBUILD requires at least one argument", None));
            };
            match inner.keyword().as_str() {
                "onbuild" => {
                    return Err(ierr(
                        node,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        None,
                    ))
                }
                "from" | "maintainer" => {
                    return Err(ierr(
                        node,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            inner.value.to_uppercase()
                        ),
                        None,
                    ))
                }
                _ => {}
            }
            // Validate the trigger now so mistakes show in the parent build.
            parse_instruction(inner)?;
            let text = node.original.trim_start();
            let trigger = text[node.value.len().min(text.len())..]
                .trim_start()
                .to_string();
            Instruction::Onbuild(trigger)
        }
        _ => {
            let mut upper = KEYWORDS.to_vec();
            upper.push("from");
            let hint =
                closest(&kw, &upper).map(|c| format!("did you mean `{}`?", c.to_uppercase()));
            return Err(ierr(
                node,
                format!("unknown instruction: {}", node.value),
                hint,
            ));
        }
    })
}

fn parse_healthcheck(node: &Node) -> Result<Instruction, InstructionError> {
    let flags = Flags::parse(
        node,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let args = node.args();
    let Some(typ) = args.first() else {
        return Err(ierr(
            node,
            "HEALTHCHECK requires at least one argument",
            None,
        ));
    };
    let typ = typ.to_uppercase();
    let test = match typ.as_str() {
        "NONE" => {
            if args.len() > 1 {
                return Err(ierr(node, "HEALTHCHECK NONE takes no arguments", None));
            }
            vec!["NONE".to_string()]
        }
        "CMD" => {
            let rest: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
            if rest.is_empty() {
                return Err(ierr(node, "Missing command after HEALTHCHECK CMD", None));
            }
            if node.json {
                let mut t = vec!["CMD".to_string()];
                t.extend(rest);
                t
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            }
        }
        other => {
            return Err(ierr(
                node,
                format!("Unknown type \"{other}\" in HEALTHCHECK (try CMD)"),
                None,
            ))
        }
    };
    let dur = |name: &str| -> Result<Duration, InstructionError> {
        match flags.string(name)? {
            None => Ok(Duration::ZERO),
            Some(v) => {
                let d = parse_duration(&v).map_err(|e| {
                    ierr(
                        node,
                        format!("invalid --{name}: {e}"),
                        Some("use a duration such as `30s`, `1m30s` or `500ms`".into()),
                    )
                })?;
                if d != Duration::ZERO && d < Duration::from_millis(1) {
                    return Err(ierr(
                        node,
                        format!("Interval \"{name}\" cannot be less than 1ms"),
                        None,
                    ));
                }
                Ok(d)
            }
        }
    };
    let retries = match flags.string("retries")? {
        None => 0,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                ierr(
                    node,
                    format!("invalid --retries: {v:?} is not a number"),
                    None,
                )
            })?;
            if n < 0 {
                return Err(ierr(node, "--retries cannot be negative", None));
            }
            n as u32
        }
    };
    Ok(Instruction::Healthcheck(Healthcheck {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    }))
}

/// Parses Go-style durations (`1h2m3.5s`, `300ms`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("missing unit in duration {s:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    // Go's durations are i64 nanoseconds: about 292 years at most.
    if total > i64::MAX as f64 / 1e9 {
        return Err(format!("duration {s:?} is out of range (at most 2562047h)"));
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("invalid duration {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> String {
        Dockerfile::parse(text).unwrap_err().message().to_string()
    }

    #[test]
    fn argument_count_messages() {
        assert_eq!(
            err_of("FROM a\nWORKDIR\n"),
            "WORKDIR requires exactly one argument"
        );
        assert_eq!(
            err_of("FROM a\nEXPOSE\n"),
            "EXPOSE requires at least one argument"
        );
        assert!(err_of("FROM a\nCOPY a\n").contains("requires at least two arguments"));
    }

    #[test]
    fn unknown_flag_and_instruction() {
        assert_eq!(err_of("FROM a\nCOPY --boo=x a b\n"), "unknown flag: --boo");
        let e = Dockerfile::parse("FROM a\nRUNN echo\n").unwrap_err();
        assert_eq!(e.message(), "unknown instruction: RUNN");
        assert_eq!(e.hint(), Some("did you mean `RUN`?"));
    }

    #[test]
    fn onbuild_restrictions() {
        assert_eq!(
            err_of("FROM a\nONBUILD FROM b\n"),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            err_of("FROM a\nONBUILD ONBUILD RUN x\n"),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
    }

    #[test]
    fn stop_signals_docker_accepts() {
        for ok in [
            "SIGTERM",
            "term",
            "Sigquit",
            "9",
            "-9",
            "RTMIN",
            "SIGRTMIN+15",
            "rtmax-14",
        ] {
            assert!(is_stop_signal(ok), "{ok}");
        }
        for bad in [
            "", "0", "SIGFOO", "SIG", "RTMIN+16", "RTMAX-15", "RTMIN+0", "RTMIN++1",
        ] {
            assert!(!is_stop_signal(bad), "{bad}");
        }
    }

    #[test]
    fn blank_arg_names_are_refused() {
        assert!(err_of("FROM a\nARG =x\n").contains("ARG names can not be blank"));
        assert!(Dockerfile::parse("FROM a\nARG a= b=\n").is_ok());
    }

    #[test]
    fn healthcheck_forms() {
        let d = Dockerfile::parse("FROM a\nHEALTHCHECK CMD hello world\n").unwrap();
        match &d.stages[0].steps[0].instruction {
            Instruction::Healthcheck(h) => assert_eq!(h.test, vec!["CMD-SHELL", "hello world"]),
            other => panic!("{other:?}"),
        }
        assert!(err_of("FROM a\nHEALTHCHECK --interval=50ns CMD x\n")
            .contains("cannot be less than 1ms"));
        assert!(Dockerfile::parse("FROM a\nHEALTHCHECK --interval=0ms CMD x\n").is_ok());
        // Found by hand: a duration past Go's 292 years was a panic in Duration.
        for big in ["99999999999999999h", "2562048h", "1e400s"] {
            let e = err_of(&format!("FROM a\nHEALTHCHECK --interval={big} CMD x\n"));
            assert!(
                e.contains("out of range") || e.contains("unknown unit"),
                "{e}"
            );
        }
    }

    #[test]
    fn copy_heredoc_sources() {
        let d = Dockerfile::parse("FROM a\nCOPY <<EOF /dest\nhello\nEOF\n").unwrap();
        match &d.stages[0].steps[0].instruction {
            Instruction::Copy(c) => {
                assert_eq!(c.inline[0].data, "hello\n");
                assert!(c.sources.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err_of("FROM a\nCOPY /foo <<EOF\nx\nEOF\n"),
            "COPY cannot accept a heredoc as a destination"
        );
    }
}
