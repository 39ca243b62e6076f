//! Variable scoping and expansion for a build, with BuildKit's rules:
//!
//! - ARGs before the first FROM are global: usable in FROM lines only, unless a stage
//!   redeclares them with a bare `ARG name` (which then takes the global value);
//! - `--build-arg` overrides defaults, both global and per stage; an ARG of one stage is not
//!   visible in another;
//! - ENV wins over an ARG of the same name;
//! - platform args (`TARGETPLATFORM`, `BUILDARCH`, ...) exist globally but must be declared
//!   inside a stage to be used there; proxy args reach RUN without a declaration;
//! - expanded: ENV/LABEL keys and values, ARG defaults, COPY/ADD sources, destination and
//!   flags, WORKDIR, USER, VOLUME, STOPSIGNAL, EXPOSE (into several words), RUN `--mount`
//!   values, heredoc bodies of COPY/ADD with an unquoted marker; not expanded: RUN, CMD,
//!   ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER, ONBUILD.
//!
//! Pure: the caller supplies build args, the platform and the base image's ENV.

use std::collections::BTreeSet;

use thiserror::Error;

use super::instructions::{CopyCmd, Dockerfile, Instruction, Stage, Step};
use super::shell::{ExpandError, Lexer};

/// Args the builder defines without an ARG declaration (reach RUN; never in history).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An expansion failure at a Dockerfile line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {source}")]
pub struct ScopeError {
    /// 1-based line.
    pub line: usize,
    /// What failed.
    #[source]
    pub source: ExpandError,
}

/// The target and build platforms, as `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platforms {
    /// What the image is for.
    pub target: String,
    /// What the builder runs on.
    pub build: String,
}

impl Platforms {
    /// The host platform for both (`linux/amd64` on x86-64).
    pub fn host() -> Platforms {
        let p = host_platform();
        Platforms {
            target: p.clone(),
            build: p,
        }
    }

    /// The automatic platform args (`TARGETPLATFORM`, `TARGETOS`, ...).
    pub fn args(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (prefix, p) in [("TARGET", &self.target), ("BUILD", &self.build)] {
            let mut parts = p.split('/');
            let os = parts.next().unwrap_or("linux");
            let arch = parts.next().unwrap_or("amd64");
            let variant = parts.next().unwrap_or("");
            out.push((format!("{prefix}PLATFORM"), p.clone()));
            out.push((format!("{prefix}OS"), os.to_string()));
            out.push((format!("{prefix}ARCH"), arch.to_string()));
            out.push((format!("{prefix}VARIANT"), variant.to_string()));
        }
        out
    }
}

/// `os/arch` of this machine in OCI terms.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm/v7",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// Values of the global (pre-FROM) args after `--build-arg` overrides.
#[derive(Debug, Clone)]
pub struct GlobalScope {
    /// Global args with their values (unset ones absent).
    pub args: Vec<(String, String)>,
    /// Names declared globally (with or without value).
    pub declared: BTreeSet<String>,
    build_args: Vec<(String, String)>,
    platforms: Platforms,
    /// Bytes of expanded words so far, over every stage (see [`MAX_EXPANDED`]).
    expanded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The most text expansion may produce in one build, over all its words: one word is capped
/// at [`MAX_EXPANSION`](crate::frontend::shell::MAX_EXPANSION), and this stops a line of
/// thousands of `$A` words, or thousands of such lines, from filling memory.
pub const MAX_EXPANDED: usize = 64 << 20;

impl GlobalScope {
    /// Evaluates the meta args of `df`.
    pub fn new(
        df: &Dockerfile,
        build_args: &[(String, String)],
        platforms: &Platforms,
    ) -> Result<GlobalScope, ScopeError> {
        let lex = Lexer::new(df.parsed.escape);
        let mut args: Vec<(String, String)> = platforms.args();
        let mut declared = BTreeSet::new();
        let line = df.stages.first().map(|s| s.span.start).unwrap_or(1);
        for (name, default) in &df.meta_args {
            declared.insert(name.clone());
            let value = match lookup(build_args, name) {
                Some(v) => Some(v.to_string()),
                None => match default {
                    Some(d) => Some(
                        lex.process_word(d, &args)
                            .map_err(|source| ScopeError { line, source })?,
                    ),
                    None => None,
                },
            };
            if let Some(v) = value {
                args.push((name.clone(), v));
                within_limit(name, &[&args]).map_err(|source| ScopeError { line, source })?;
            }
        }
        Ok(GlobalScope {
            args,
            declared,
            build_args: build_args.to_vec(),
            platforms: platforms.clone(),
            expanded: Default::default(),
        })
    }

    /// A stage's FROM with global args expanded: (base, platform, name).
    pub fn from_line(
        &self,
        df: &Dockerfile,
        stage: &Stage,
    ) -> Result<(String, Option<String>), ScopeError> {
        let lex = Lexer::new(df.parsed.escape);
        let err = |source| ScopeError {
            line: stage.span.start,
            source,
        };
        let base = lex.process_word(&stage.base, &self.args).map_err(err)?;
        let platform = match &stage.platform {
            Some(p) => Some(lex.process_word(p, &self.args).map_err(err)?),
            None => None,
        };
        Ok((base, platform))
    }

    /// Build args that no ARG anywhere declares (Docker warns about them).
    pub fn unused_build_args(&self, df: &Dockerfile) -> Vec<String> {
        let mut declared = self.declared.clone();
        for s in &df.stages {
            for st in &s.steps {
                if let Instruction::Arg(a) = &st.instruction {
                    declared.extend(a.iter().map(|(n, _)| n.clone()));
                }
            }
        }
        self.build_args
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !declared.contains(k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect()
    }
}

/// The most ARG and ENV values one scope may hold in total: each word is capped at
/// [`MAX_EXPANSION`](crate::frontend::shell::MAX_EXPANSION), and this stops a few hundred
/// `ENV Bn=$A` lines from copying a capped value into gigabytes.
pub const MAX_VARIABLES: usize = 8 << 20;

/// Fails when `lists` hold more than [`MAX_VARIABLES`] bytes; `name` is the variable just set.
fn within_limit(name: &str, lists: &[&[(String, String)]]) -> Result<(), ExpandError> {
    let total: usize = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if total > MAX_VARIABLES {
        return Err(ExpandError {
            word: name.to_string(),
            reason: format!(
                "ARG and ENV values total more than {} MiB",
                MAX_VARIABLES >> 20
            ),
        });
    }
    Ok(())
}

fn lookup<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: String) {
    list.retain(|(k, _)| k != name);
    list.push((name.to_string(), value));
}

/// The variable scope of one stage while its steps are walked in order.
#[derive(Debug, Clone)]
pub struct StageScope<'g> {
    global: &'g GlobalScope,
    lex: Lexer,
    /// ARGs declared in this stage with their values.
    pub args: Vec<(String, String)>,
    /// The image environment (base image ENV, then this stage's ENV).
    pub env: Vec<(String, String)>,
}

impl<'g> StageScope<'g> {
    /// A scope starting from the base image's environment.
    pub fn new(
        global: &'g GlobalScope,
        escape: char,
        base_env: Vec<(String, String)>,
    ) -> StageScope<'g> {
        StageScope {
            global,
            lex: Lexer::new(escape),
            args: Vec::new(),
            env: base_env,
        }
    }

    /// What expansion sees: args, with ENV winning.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.env.iter().cloned());
        v
    }

    /// The environment a RUN gets: ENV plus args in scope (ENV wins) plus proxy build args.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        for p in PROXY_ARGS {
            if let Some(val) = lookup(&self.global.build_args, p) {
                v.push((p.to_string(), val.to_string()));
            }
        }
        for (k, val) in self.args.iter().chain(self.env.iter()) {
            set(&mut v, k, val.clone());
        }
        v
    }

    fn word(&self, w: &str) -> Result<String, ExpandError> {
        let out = self.lex.process_word(w, &self.vars())?;
        self.account(w, out.len())?;
        Ok(out)
    }

    /// Counts `n` bytes of expanded text against [`MAX_EXPANDED`].
    fn account(&self, w: &str, n: usize) -> Result<(), ExpandError> {
        use std::sync::atomic::Ordering;
        let total = self.global.expanded.fetch_add(n, Ordering::Relaxed) + n;
        if total > MAX_EXPANDED {
            return Err(ExpandError {
                word: w.chars().take(80).collect(),
                reason: format!(
                    "the Dockerfile's variables expand to more than {} MiB in all",
                    MAX_EXPANDED >> 20
                ),
            });
        }
        Ok(())
    }

    /// Applies `step` to the scope and returns it with build-time variables expanded.
    pub fn step(&mut self, step: &Step) -> Result<Instruction, ScopeError> {
        let line = step.span.start;
        self.apply(&step.instruction)
            .map_err(|source| ScopeError { line, source })
    }

    fn apply(&mut self, ins: &Instruction) -> Result<Instruction, ExpandError> {
        Ok(match ins {
            Instruction::Arg(list) => {
                let mut out = Vec::new();
                for (name, default) in list {
                    let value = if let Some(v) = lookup(&self.global.build_args, name) {
                        Some(v.to_string())
                    } else if let Some(d) = default {
                        Some(self.word(d)?)
                    } else if self.global.declared.contains(name) {
                        lookup(&self.global.args, name).map(String::from)
                    } else {
                        lookup(&self.global.platforms.args(), name).map(String::from)
                    };
                    if let Some(v) = &value {
                        set(&mut self.args, name, v.clone());
                        within_limit(name, &[&self.args, &self.env])?;
                    }
                    out.push((name.clone(), value));
                }
                Instruction::Arg(out)
            }
            Instruction::Env(pairs) => {
                let mut out = Vec::new();
                for (k, v) in pairs {
                    let k = self.word(k)?;
                    let v = self.word(v)?;
                    set(&mut self.env, &k, v.clone());
                    within_limit(&k, &[&self.args, &self.env])?;
                    out.push((k, v));
                }
                Instruction::Env(out)
            }
            Instruction::Label(pairs) => {
                let mut out = Vec::new();
                for (k, v) in pairs {
                    out.push((self.word(k)?, self.word(v)?));
                }
                Instruction::Label(out)
            }
            Instruction::Copy(c) => Instruction::Copy(self.copy(c)?),
            Instruction::Add(c) => Instruction::Add(self.copy(c)?),
            Instruction::Workdir(w) => Instruction::Workdir(self.word(w)?),
            Instruction::User(u) => Instruction::User(self.word(u)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(self.word(s)?),
            Instruction::Volume(v) => {
                Instruction::Volume(v.iter().map(|p| self.word(p)).collect::<Result<_, _>>()?)
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    let words = self.lex.process_words(p, &self.vars())?;
                    self.account(p, words.iter().map(String::len).sum())?;
                    out.extend(words);
                }
                Instruction::Expose(out)
            }
            Instruction::Run(r) => {
                let mut r = r.clone();
                r.mounts = r
                    .mounts
                    .iter()
                    .map(|m| self.word(m))
                    .collect::<Result<_, _>>()?;
                Instruction::Run(r)
            }
            other => other.clone(),
        })
    }

    fn copy(&self, c: &CopyCmd) -> Result<CopyCmd, ExpandError> {
        let mut c = c.clone();
        c.sources = c
            .sources
            .iter()
            .map(|s| self.word(s))
            .collect::<Result<_, _>>()?;
        c.dest = self.word(&c.dest)?;
        for f in [&mut c.chown, &mut c.chmod, &mut c.checksum] {
            if let Some(v) = f.as_mut() {
                *v = self.word(v)?;
            }
        }
        let raw = Lexer {
            skip_process_quotes: true,
            ..self.lex
        };
        for f in &mut c.inline {
            if f.expand {
                f.data = raw.process_word(&f.data, &self.vars())?;
                self.account("<<heredoc", f.data.len())?;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, build_args: &[(&str, &str)]) -> (Vec<Instruction>, Vec<(String, String)>) {
        let df = Dockerfile::parse(text).unwrap();
        let ba: Vec<(String, String)> = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let g = GlobalScope::new(&df, &ba, &Platforms::host()).unwrap();
        let stage = df.stages.last().unwrap();
        let mut s = StageScope::new(&g, '\\', vec![]);
        let out = stage.steps.iter().map(|st| s.step(st).unwrap()).collect();
        (out, s.env.clone())
    }

    /// The first step that fails, as (line, message).
    fn first_error(text: &str) -> (usize, String) {
        let df = Dockerfile::parse(text).unwrap();
        let g = GlobalScope::new(&df, &[], &Platforms::host()).unwrap();
        let mut s = StageScope::new(&g, '\\', vec![]);
        for st in &df.stages[0].steps {
            if let Err(e) = s.step(st) {
                return (e.line, e.source.to_string());
            }
        }
        panic!("no step failed");
    }

    #[test]
    fn variables_that_grow_from_themselves_stop_at_a_limit() {
        // 8 bytes doubled 17 times is 1 MiB: the 18th doubling is refused (line 2 + 18).
        let doubling = format!(
            "FROM scratch\nENV A=xxxxxxxx\n{}",
            "ENV A=$A$A\n".repeat(40)
        );
        let (line, msg) = first_error(&doubling);
        assert_eq!(line, 20, "{msg}");
        assert!(msg.contains("more than 1 MiB"), "{msg}");
        // Copies of a large value into many variables hit the scope's total.
        let grow = "ENV A=$A$A\n".repeat(16);
        let copies: String = (0..100).map(|i| format!("ENV B{i}=$A\n")).collect();
        let (_, msg) = first_error(&format!("FROM scratch\nENV A=xxxxxxxx\n{grow}{copies}"));
        assert!(msg.contains("total more than 8 MiB"), "{msg}");
        // Many words of one large value in labels hit the build's total.
        let words: String = (0..100).map(|i| format!(" L{i}=$A")).collect();
        let labels = format!("LABEL{words}\n").repeat(2);
        let (_, msg) = first_error(&format!("FROM scratch\nENV A=xxxxxxxx\n{grow}{labels}"));
        assert!(msg.contains("more than 64 MiB in all"), "{msg}");
        // A replacement that multiplies is sized before it is built.
        let (_, msg) = first_error(&format!(
            "FROM scratch\nENV A=xxxxxxxx\n{grow}ENV B=${{A//x/{}}}\n",
            "y".repeat(100)
        ));
        assert!(msg.contains("more than 1 MiB"), "{msg}");
    }

    #[test]
    fn global_args_only_in_from_unless_redeclared() {
        let df = Dockerfile::parse("ARG V=1\nFROM img:$V\nENV A=$V\nARG V\nENV B=$V\n").unwrap();
        let g = GlobalScope::new(&df, &[], &Platforms::host()).unwrap();
        assert_eq!(g.from_line(&df, &df.stages[0]).unwrap().0, "img:1");
        let mut s = StageScope::new(&g, '\\', vec![]);
        for st in &df.stages[0].steps {
            s.step(st).unwrap();
        }
        assert_eq!(lookup(&s.env, "A"), Some(""));
        assert_eq!(lookup(&s.env, "B"), Some("1"));
    }

    #[test]
    fn build_arg_overrides_and_env_wins() {
        let (_, env) = run(
            "FROM a\nARG X=def\nENV Y=$X\nENV X=env\nENV Z=$X\n",
            &[("X", "cli")],
        );
        assert_eq!(lookup(&env, "Y"), Some("cli"));
        assert_eq!(lookup(&env, "Z"), Some("env"));
    }

    #[test]
    fn empty_arg_is_not_unset() {
        let (_, env) = run("FROM a\nARG x=\nENV a=${x:-d} b=${x-d}\n", &[]);
        assert_eq!(lookup(&env, "a"), Some("d"));
        assert_eq!(lookup(&env, "b"), Some(""));
    }

    #[test]
    fn run_and_cmd_are_not_expanded_but_mounts_are() {
        let (out, _) = run(
            "FROM a\nARG D=/c\nRUN --mount=type=cache,target=$D echo $D\nCMD echo $D\n",
            &[],
        );
        match &out[1] {
            Instruction::Run(r) => {
                assert_eq!(r.mounts, vec!["type=cache,target=/c"]);
                assert_eq!(r.command.args, vec!["echo $D"]);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(&out[2], Instruction::Cmd(c) if c.args == vec!["echo $D"]));
    }

    #[test]
    fn expose_splits_and_platform_args_need_declaring() {
        let (out, env) = run(
            "FROM a\nENV P=\"80 443\"\nEXPOSE $P\nENV T=$TARGETOS\nARG TARGETOS\nENV U=$TARGETOS\n",
            &[],
        );
        assert!(
            matches!(&out[1], Instruction::Expose(p) if p == &vec!["80".to_string(), "443".to_string()])
        );
        assert_eq!(lookup(&env, "T"), Some(""));
        assert_eq!(lookup(&env, "U"), Some("linux"));
    }

    #[test]
    fn heredoc_copy_expands_only_unquoted() {
        let (out, _) = run(
            "FROM a\nARG N=x\nCOPY <<EOF <<'RAW' /d/\n$N \"q\"\nEOF\n$N\nRAW\n",
            &[],
        );
        match &out[1] {
            Instruction::Copy(c) => {
                assert_eq!(c.inline[0].data, "x \"q\"\n");
                assert_eq!(c.inline[1].data, "$N\n");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn unused_build_args_are_reported() {
        let df = Dockerfile::parse("FROM a\nARG USED\n").unwrap();
        let ba = vec![
            ("USED".into(), "1".into()),
            ("TYPO".into(), "2".into()),
            ("HTTP_PROXY".into(), "p".into()),
        ];
        let g = GlobalScope::new(&df, &ba, &Platforms::host()).unwrap();
        assert_eq!(g.unused_build_args(&df), vec!["TYPO"]);
    }
}
