//! Dockerfile best-practice checks (`rbuild lint`, and warnings during `build`): each finding
//! names the line, says why in one line and how to fix it. Pure: the Dockerfile (typed and as
//! text) and a few facts about the context in, findings out. Check names follow BuildKit's
//! where one exists (`JSONArgsRecommended`, `StageNameCasing`, `WorkdirRelativePath`,
//! `SecretsUsedInArgOrEnv`, `MaintainerDeprecated`, `UndefinedArgInFrom`,
//! `ExposeInvalidFormat`); `# check=skip=NAME,...` (or `skip=all`) turns checks off.

use serde::Serialize;

use crate::frontend::instructions::{Dockerfile, Instruction};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's name.
    pub check: &'static str,
    /// 1-based line.
    pub line: usize,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// Facts about the build context that checks use (gathered by the caller).
#[derive(Debug, Clone, Default)]
pub struct ContextFacts {
    /// A `.dockerignore` (or `Dockerfile.dockerignore`) exists.
    pub has_dockerignore: bool,
    /// Total bytes of regular files in the context, if measured.
    pub size: Option<u64>,
}

/// Every check's name, for `# check=skip=` validation and documentation.
pub const CHECKS: &[&str] = &[
    "UnpinnedBaseImage",
    "RootFinalStage",
    "CopyBeforeDependencyInstall",
    "LargeBaseImage",
    "AddInsteadOfCopy",
    "AptGetNoRecommends",
    "AptGetListsNotCleaned",
    "AptGetUpgrade",
    "MissingDockerignore",
    "JSONArgsRecommended",
    "ExposeInvalidFormat",
    "WorkdirRelativePath",
    "UnusedStage",
    "UndefinedArgInFrom",
    "ArgUsedBeforeDeclared",
    "SecretsUsedInArgOrEnv",
    "StageNameCasing",
    "MaintainerDeprecated",
];

/// A context this big without a `.dockerignore` gets a warning.
pub const LARGE_CONTEXT: u64 = 100 << 20;

/// Runs every check not skipped by `# check=skip=...`.
pub fn lint(df: &Dockerfile, text: &str, ctx: &ContextFacts) -> Vec<Finding> {
    let skip: Vec<String> = df
        .parsed
        .directive("check")
        .and_then(|v| {
            v.split(';')
                .find_map(|kv| kv.trim().strip_prefix("skip=").map(String::from))
        })
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |check: &'static str, line: usize, message: String, fix: &str| {
        if !skip.iter().any(|s| s == "all" || s == check) {
            out.push(Finding {
                check,
                line,
                message,
                fix: fix.to_string(),
            });
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let stage_names: Vec<Option<String>> = df.stages.iter().map(|s| s.name.clone()).collect();
    let is_stage = |base: &str| {
        stage_names
            .iter()
            .flatten()
            .any(|n| n.eq_ignore_ascii_case(base))
    };
    let declared_meta: Vec<&str> = df.meta_args.iter().map(|(n, _)| n.as_str()).collect();

    for stage in &df.stages {
        let from_line = stage.span.start;
        let base = stage.base.as_str();
        // FROM $VAR with a variable no ARG before FROM declares.
        for var in referenced_vars(base) {
            if !declared_meta.contains(&var.as_str()) {
                add(
                    "UndefinedArgInFrom",
                    from_line,
                    format!("FROM uses ${var}, which no ARG before the first FROM declares"),
                    "declare it with `ARG NAME=default` above the first FROM",
                );
            }
        }
        if base != "scratch"
            && !is_stage(base)
            && !base.contains('$')
            && !base.starts_with("oci-layout://")
        {
            let (name, tag, digest) = split_image(base);
            if digest.is_none() && matches!(tag, None | Some("latest")) {
                add(
                    "UnpinnedBaseImage",
                    from_line,
                    format!(
                        "base image {base} has {} tag: builds are not reproducible",
                        if tag.is_none() { "no" } else { "the latest" }
                    ),
                    "pin a version (`FROM node:20.11`) or a digest (`rbuild pin`)",
                );
            }
            let short = name.rsplit('/').next().unwrap_or(name);
            let slim_variant = [
                "node", "python", "ruby", "golang", "openjdk", "php", "perl", "rust", "elixir",
            ];
            let tag_s = tag.unwrap_or("latest");
            if slim_variant.contains(&short)
                && !["slim", "alpine", "distroless"]
                    .iter()
                    .any(|v| tag_s.contains(v))
            {
                add(
                    "LargeBaseImage",
                    from_line,
                    format!("{short}:{tag_s} is the full image (hundreds of MB of build tools)"),
                    &format!("use {short}:{tag_s}-slim or -alpine for the runtime stage (a multi-stage build keeps the full image for building)"),
                );
            }
        }
        // Stage name casing, from the line as written (names are stored lower-cased).
        if let Some(raw) = lines.get(from_line.saturating_sub(1)) {
            let words: Vec<&str> = raw.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                if let Some(n) = words.get(i + 1) {
                    if n.chars().any(|c| c.is_ascii_uppercase()) {
                        add(
                            "StageNameCasing",
                            from_line,
                            format!("stage name {n:?} is not lower case"),
                            "write stage names in lower case (they are matched case-insensitively)",
                        );
                    }
                }
            }
        }
        let mut broad_copy: Option<usize> = None;
        // ARGs this stage declares, and where: a use on an earlier line expands to nothing.
        let declared_at: Vec<(String, usize)> = stage
            .steps
            .iter()
            .filter_map(|s| match &s.instruction {
                Instruction::Arg(list) => {
                    Some(list.iter().map(move |(n, _)| (n.clone(), s.span.start)))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let mut env_names: Vec<String> = Vec::new();
        for step in &stage.steps {
            let line = step.span.start;
            if !matches!(
                step.instruction,
                Instruction::Run(_) | Instruction::Cmd(_) | Instruction::Entrypoint(_)
            ) {
                for var in referenced_vars(&step.original) {
                    let first = declared_at
                        .iter()
                        .filter(|(n, _)| *n == var)
                        .map(|(_, l)| *l)
                        .min();
                    if first.is_some_and(|l| l > line) && !env_names.contains(&var) {
                        add(
                            "ArgUsedBeforeDeclared",
                            line,
                            format!("${var} is used here but declared by ARG only on line {}: it expands to nothing", first.unwrap_or(0)),
                            "move the ARG above its first use",
                        );
                    }
                }
            }
            if let Instruction::Env(pairs) = &step.instruction {
                env_names.extend(pairs.iter().map(|(k, _)| k.clone()));
            }
            match &step.instruction {
                Instruction::Copy(c) | Instruction::Add(c) => {
                    let is_add = matches!(step.instruction, Instruction::Add(_));
                    if c.from.is_none()
                        && c.sources
                            .iter()
                            .any(|s| matches!(s.as_str(), "." | "./" | "*" | "./*"))
                    {
                        broad_copy.get_or_insert(line);
                    }
                    if is_add
                        && !c.sources.is_empty()
                        && c.sources.iter().all(|s| {
                            !s.contains("://") && !s.starts_with("git@") && !is_archive_name(s)
                        })
                    {
                        add(
                            "AddInsteadOfCopy",
                            line,
                            "ADD of plain local files: COPY does the same without ADD's surprises (unpacking, URLs)".into(),
                            "use COPY",
                        );
                    }
                }
                Instruction::Run(r) => {
                    let cmd = r.command.args.join(" ");
                    if let (Some(copy_line), Some(tool)) = (broad_copy, dependency_install(&cmd)) {
                        add(
                            "CopyBeforeDependencyInstall",
                            line,
                            format!("`{tool}` runs after the broad COPY on line {copy_line}: any source change re-runs it"),
                            &format!("copy only the manifests first ({}), install, then `COPY . .`", manifests_for(tool)),
                        );
                    }
                    if cmd.contains("apt-get") && cmd.contains("install") {
                        if !cmd.contains("--no-install-recommends") {
                            add(
                                "AptGetNoRecommends",
                                line,
                                "apt-get install without --no-install-recommends pulls in packages nobody asked for".into(),
                                "add --no-install-recommends",
                            );
                        }
                        if !cmd.contains("/var/lib/apt/lists") {
                            add(
                                "AptGetListsNotCleaned",
                                line,
                                "the apt package lists stay in the layer (tens of MB)".into(),
                                "end the same RUN with `&& rm -rf /var/lib/apt/lists/*`",
                            );
                        }
                    }
                    if cmd.contains("apt-get upgrade") || cmd.contains("apt-get dist-upgrade") {
                        add(
                            "AptGetUpgrade",
                            line,
                            "apt-get upgrade makes the image depend on the day it was built".into(),
                            "use a newer base image tag instead, or pin the packages you need",
                        );
                    }
                }
                Instruction::Cmd(c) | Instruction::Entrypoint(c) if c.shell_form => {
                    let which = if matches!(step.instruction, Instruction::Cmd(_)) {
                        "CMD"
                    } else {
                        "ENTRYPOINT"
                    };
                    add(
                        "JSONArgsRecommended",
                        line,
                        format!("{which} in shell form runs under /bin/sh -c, which does not pass signals on (slow, unclean stops)"),
                        &format!("write it in JSON form: {which} [{}]", json_args(&c.args.join(" "))),
                    );
                }
                Instruction::Expose(ports) => {
                    for p in ports {
                        if !valid_port(p) {
                            add(
                                "ExposeInvalidFormat",
                                line,
                                format!("EXPOSE {p} is not a port"),
                                "use PORT, PORT/tcp or PORT/udp with 1 ≤ PORT ≤ 65535 (publishing ports is for `docker run -p`)",
                            );
                        }
                    }
                }
                Instruction::Workdir(w) if !w.starts_with('/') && !w.starts_with('$') => {
                    add(
                        "WorkdirRelativePath",
                        line,
                        format!("WORKDIR {w} is relative: it depends on every WORKDIR before it"),
                        "use an absolute path",
                    );
                }
                Instruction::Arg(list) => {
                    for (name, _) in list {
                        secret_name(&mut add, "ARG", name, line);
                    }
                }
                Instruction::Env(pairs) => {
                    for (name, _) in pairs {
                        secret_name(&mut add, "ENV", name, line);
                    }
                }
                Instruction::Maintainer(_) => add(
                    "MaintainerDeprecated",
                    line,
                    "MAINTAINER is deprecated".into(),
                    "use `LABEL org.opencontainers.image.authors=\"...\"`",
                ),
                _ => {}
            }
        }
    }
    // The final stage's user.
    if let Some(last) = df.stages.last() {
        let user = last.steps.iter().rev().find_map(|s| match &s.instruction {
            Instruction::User(u) => Some((u.clone(), s.span.start)),
            _ => None,
        });
        let root = match &user {
            None => !is_stage(&last.base) && last.base != "scratch",
            Some((u, _)) => {
                let name = u.split(':').next().unwrap_or("");
                name == "root" || name == "0"
            }
        };
        if root {
            add(
                "RootFinalStage",
                user.as_ref().map_or(last.span.start, |(_, l)| *l),
                "the image runs as root".into(),
                "add a user and end with `USER app` (or a numeric uid)",
            );
        }
    }
    // Stages nothing uses (not the last one, not a FROM or COPY --from of another).
    for (i, stage) in df.stages.iter().enumerate() {
        if i + 1 == df.stages.len() {
            continue;
        }
        let names: Vec<String> = stage.name.iter().cloned().chain([i.to_string()]).collect();
        let used = df.stages.iter().skip(i + 1).any(|s| {
            names.iter().any(|n| s.base.eq_ignore_ascii_case(n))
                || s.steps.iter().any(|st| match &st.instruction {
                    Instruction::Copy(c) | Instruction::Add(c) => c
                        .from
                        .as_deref()
                        .is_some_and(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n))),
                    Instruction::Run(r) => r.mounts.iter().any(|m| {
                        names
                            .iter()
                            .any(|n| m.to_ascii_lowercase().contains(&format!("from={n}")))
                    }),
                    _ => false,
                })
        });
        if !used {
            add(
                "UnusedStage",
                stage.span.start,
                format!(
                    "stage {} is not used by the final stage",
                    stage.name.clone().unwrap_or_else(|| i.to_string())
                ),
                "remove it, or build it on purpose with --target",
            );
        }
    }
    if let (false, Some(size)) = (ctx.has_dockerignore, ctx.size) {
        if size >= LARGE_CONTEXT {
            add(
                "MissingDockerignore",
                1,
                format!("the context is {} MB and has no .dockerignore", size >> 20),
                "add a .dockerignore (.git, node_modules, build output, ...)",
            );
        }
    }
    out.sort_by_key(|f| f.line);
    out
}

fn secret_name(
    add: &mut impl FnMut(&'static str, usize, String, &str),
    kind: &str,
    name: &str,
    line: usize,
) {
    let upper = name.to_ascii_uppercase();
    let looks_secret = [
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "API_KEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper.ends_with("_KEY");
    if looks_secret {
        add(
            "SecretsUsedInArgOrEnv",
            line,
            format!("{kind} {name} looks like a secret: its value stays in the image history"),
            "pass it with `--secret id=NAME` and `RUN --mount=type=secret,id=NAME`",
        );
    }
}

/// The mechanical fixes (`rbuild lint --fix`) for these findings: a one-line shell-form CMD or
/// ENTRYPOINT without shell syntax becomes JSON form, a flagged ADD becomes COPY. Returns
/// (line, old text, new text); anything that needs judgement is left alone.
pub fn fixes(df: &Dockerfile, text: &str, findings: &[Finding]) -> Vec<(usize, String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for stage in &df.stages {
        for step in &stage.steps {
            let line = step.span.start;
            if step.span.end != line {
                continue;
            }
            let flagged = |check: &str| findings.iter().any(|f| f.line == line && f.check == check);
            let Some(old) = lines.get(line - 1) else {
                continue;
            };
            let trimmed = old.trim_start();
            let indent = &old[..old.len() - trimmed.len()];
            let (kw, rest) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            let new = match &step.instruction {
                Instruction::Cmd(c) | Instruction::Entrypoint(c)
                    if c.shell_form && flagged("JSONArgsRecommended") =>
                {
                    let cmd = c.args.join(" ");
                    let shell_syntax = cmd.chars().any(|ch| "$&|;<>*?`()'\"\\~#{}[]=".contains(ch));
                    if shell_syntax || cmd.trim().is_empty() {
                        continue;
                    }
                    format!("{indent}{kw} [{}]", json_args(&cmd))
                }
                Instruction::Add(c) if flagged("AddInsteadOfCopy") => {
                    if c.checksum.is_some() || c.unpack.is_some() || c.keep_git_dir {
                        continue;
                    }
                    format!("{indent}COPY {rest}")
                }
                _ => continue,
            };
            out.push((line, old.to_string(), new));
        }
    }
    out
}

/// `$VAR` and `${VAR...}` names in a word.
fn referenced_vars(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let rest = &s[i + 1..];
            let rest = rest.strip_prefix('{').unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        i += 1;
    }
    out
}

/// (name, tag, digest) of an image reference as written.
fn split_image(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

fn is_archive_name(s: &str) -> bool {
    [
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst",
    ]
    .iter()
    .any(|e| s.ends_with(e))
}

/// The dependency installer a RUN calls, if any.
fn dependency_install(cmd: &str) -> Option<&'static str> {
    [
        ("npm install", "npm install"),
        ("npm ci", "npm ci"),
        ("yarn install", "yarn install"),
        ("pnpm install", "pnpm install"),
        ("pip install -r", "pip install -r"),
        ("pip3 install -r", "pip install -r"),
        ("go mod download", "go mod download"),
        ("bundle install", "bundle install"),
        ("composer install", "composer install"),
        ("cargo fetch", "cargo fetch"),
        ("cargo build", "cargo build"),
    ]
    .iter()
    .find(|(needle, _)| cmd.contains(needle))
    .map(|(_, t)| *t)
}

fn manifests_for(tool: &str) -> &'static str {
    match tool {
        "npm install" | "npm ci" => "COPY package*.json ./",
        "yarn install" => "COPY package.json yarn.lock ./",
        "pnpm install" => "COPY package.json pnpm-lock.yaml ./",
        "pip install -r" => "COPY requirements.txt ./",
        "go mod download" => "COPY go.mod go.sum ./",
        "bundle install" => "COPY Gemfile Gemfile.lock ./",
        "composer install" => "COPY composer.json composer.lock ./",
        _ => "COPY Cargo.toml Cargo.lock ./",
    }
}

fn valid_port(p: &str) -> bool {
    let (port, proto) = match p.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (p, None),
    };
    if p.contains('$') {
        return true; // expanded at build time
    }
    let ok_port = |x: &str| x.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    let ports_ok = match port.split_once('-') {
        Some((a, b)) => ok_port(a) && ok_port(b),
        None => ok_port(port),
    };
    ports_ok && proto.is_none_or(|x| matches!(x, "tcp" | "udp" | "sctp"))
}

/// Shell words as a JSON array body (best effort, for the suggestion).
fn json_args(cmd: &str) -> String {
    cmd.split_whitespace()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
