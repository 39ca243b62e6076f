//! Dockerfile text → syntax tree, with BuildKit's line-based rules: parser directives,
//! escape-token continuations, comments and blank lines inside continuations, builder flags,
//! JSON (exec) vs shell form, heredocs, ONBUILD, and line spans on every node.
//!
//! Written by hand: the Dockerfile crates on crates.io fail on heredocs, `# escape=`, empty
//! continuation lines and value-less flags (see `../shared/docs/crates.md`). This module is
//! checked against BuildKit's own parser vectors (`../shared/conformance/dockerfile-parser`)
//! and the dumps of 45 real-world Dockerfiles.

use thiserror::Error;

use super::ast::{Heredoc, Node, Span};
use super::shell::{Lexer, NoEnv};

/// BuildKit's limit on one physical line.
pub const MAX_LINE: usize = 65535;

/// Instructions the parser knows; anything else parses (BuildKit keeps it) but is rejected
/// when instructions are typed.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A parse failure with its location.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line where the problem starts.
    pub line: usize,
    /// Last line involved (same as `line` for one-line problems).
    pub end_line: usize,
    /// What is wrong, in BuildKit's words where BuildKit has them.
    pub message: String,
}

/// A non-fatal finding of the parser (BuildKit reports the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// One-line summary.
    pub short: String,
    /// Why it matters.
    pub detail: String,
    /// Where.
    pub line: usize,
}

/// A parser directive found at the top of the file (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name.
    pub name: String,
    /// Value as written, surrounding blanks removed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// The parse result: a root node whose children are the instructions.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Root node (value "", children = instructions).
    pub root: Node,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
    /// The escape token in force (`\` or `` ` ``).
    pub escape: char,
    /// The directives at the top of the file.
    pub directives: Vec<Directive>,
}

impl Parsed {
    /// The instructions in order.
    pub fn instructions(&self) -> &[Node] {
        &self.root.children
    }

    /// BuildKit's `AST.Dump()` plus a trailing newline (the `result` files' format).
    pub fn dump(&self) -> String {
        format!("{}\n", self.root.dump())
    }

    /// The value of a directive, if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

const DIRECTIVES: &[&str] = &["escape", "syntax", "check"];

/// Recognises directives until the first line that is not one.
#[derive(Default)]
struct DirectiveParser {
    line: usize,
    done: bool,
    found: Vec<Directive>,
}

impl DirectiveParser {
    fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, String> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        if self.line == 1 && line.starts_with("#!") {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_lowercase();
        if !DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        let d = Directive {
            name,
            value: value.to_string(),
            line: self.line,
        };
        self.found.push(d.clone());
        Ok(Some(d))
    }
}

/// `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let name_len = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// A directive found by [`detect_directive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDirective {
    /// The value up to the first blank (the frontend image for `syntax`).
    pub reference: String,
    /// The whole value.
    pub cmdline: String,
    /// 1-based line.
    pub line: usize,
}

/// Looks for directive `key` at the top of `text` (BuildKit's `ParseDirective`): a leading
/// `#!` line is skipped, the `#` form first, then — with `fallbacks` — `//key=` lines and a
/// whole-file JSON object (`DetectSyntax`).
pub fn detect_directive(text: &str, key: &str, fallbacks: bool) -> Option<FoundDirective> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let found = |value: &str, line: usize| FoundDirective {
        reference: value.split([' ', '\t']).next().unwrap_or("").to_string(),
        cmdline: value.to_string(),
        line,
    };
    let prefixes: &[&str] = if fallbacks { &["#", "//"] } else { &["#"] };
    for prefix in prefixes {
        for (i, line) in text.lines().enumerate() {
            if i == 0 && line.starts_with("#!") {
                continue;
            }
            let Some(rest) = line.strip_prefix(prefix) else {
                break;
            };
            let Some((name, value)) = match_directive(&format!("#{rest}"))
                .map(|(n, v)| (n.to_lowercase(), v.to_string()))
            else {
                break;
            };
            if name == key {
                return Some(found(&value, i + 1));
            }
            if !DIRECTIVES.contains(&name.as_str()) {
                break;
            }
        }
    }
    if fallbacks {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        {
            if let Some(serde_json::Value::String(v)) = map.get(key) {
                return Some(FoundDirective {
                    reference: v.clone(),
                    cmdline: v.clone(),
                    line: 1,
                });
            }
        }
    }
    None
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    Parser::new().run(text)
}

struct Parser {
    escape: char,
    directives: DirectiveParser,
}

fn err(line: usize, end_line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        end_line,
        message: message.into(),
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Splits on `[\t\v\f\r ]+` the way BuildKit's `reWhitespace` does.
fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_ws(s: &str, limit: Option<usize>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if limit == Some(out.len() + 1) {
            out.push(rest);
            return out;
        }
        match rest.find(is_ws) {
            None => {
                out.push(rest);
                return out;
            }
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(is_ws);
            }
        }
    }
}

impl Parser {
    fn new() -> Self {
        Parser {
            escape: '\\',
            directives: DirectiveParser::default(),
        }
    }

    /// Strips newline (and leading blanks when asked), blanks out comments, and feeds the
    /// directive parser.
    fn process_line<'a>(&mut self, raw: &'a str, strip_left: bool) -> Result<&'a str, String> {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start();
        }
        if let Some(d) = self.directives.parse_line(token)? {
            if d.name == "escape" {
                self.escape = match d.value.as_str() {
                    "`" => '`',
                    "\\" => '\\',
                    other => {
                        return Err(format!(
                            "invalid escape token '{other}' does not match ` or \\"
                        ))
                    }
                };
            }
        }
        Ok(if is_comment(token) { "" } else { token })
    }

    /// Removes a trailing continuation token; returns (line, is_end_of_line).
    fn trim_continuation(&self, line: &str) -> (String, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        if let Some(before) = trimmed.strip_suffix(self.escape) {
            if before.is_empty() || !before.ends_with(self.escape) {
                return (before.to_string(), false);
            }
        }
        (line.to_string(), true)
    }

    fn run(mut self, text: &str) -> Result<Parsed, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, l) in lines.iter().enumerate() {
            if trim_newline(l).len() > MAX_LINE {
                return Err(err(
                    i + 1,
                    i + 1,
                    format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
                ));
            }
        }
        let mut root = Node::default();
        let mut warnings = Vec::new();
        let mut idx = 0usize; // next physical line to read
        let mut current = 0usize; // lines consumed (1-based number of the last one)
        let mut first_start: Option<usize> = None;

        while idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let processed = self
                .process_line(raw, true)
                .map_err(|m| err(current + 1, current + 1, m))?;
            current += 1;
            let start_line = current;
            let (mut line, mut eol) = self.trim_continuation(processed);
            if eol && line.is_empty() {
                continue;
            }
            let mut empty_continuation = false;
            while !eol && idx < lines.len() {
                let raw = lines[idx];
                idx += 1;
                let processed = self
                    .process_line(raw, false)
                    .map_err(|m| err(current, current, m))?;
                current += 1;
                if is_comment(raw) {
                    continue;
                }
                if processed.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (cont, end) = self.trim_continuation(processed);
                line.push_str(&cont);
                eol = end;
            }
            if empty_continuation {
                warnings.push(Warning {
                    short: format!("Empty continuation line found in: {line}"),
                    detail: "Empty continuation lines will become errors in a future release"
                        .into(),
                    line: current,
                });
            }

            let mut child = self
                .node_from_line(&line)
                .map_err(|m| err(start_line, current, m))?;

            if can_contain_heredoc(&child) && line.contains("<<") {
                let docs = heredocs_from_line(&line).map_err(|m| err(start_line, current, m))?;
                for mut doc in docs {
                    let mut terminated = false;
                    while idx < lines.len() {
                        let raw = lines[idx];
                        idx += 1;
                        current += 1;
                        let mut candidate = trim_newline(raw);
                        if doc.chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        doc.content.push_str(raw);
                    }
                    if !terminated {
                        return Err(err(
                            start_line,
                            current,
                            format!(
                                "unterminated heredoc: no line `{}` closes the heredoc opened on line {start_line}",
                                doc.name
                            ),
                        ));
                    }
                    child.heredocs.push(doc);
                }
            }
            child.span = Span {
                start: start_line,
                end: current,
            };
            first_start.get_or_insert(start_line);
            root.span.end = current;
            root.children.push(child);
        }

        let Some(start) = first_start else {
            return Err(err(
                current.max(1),
                current.max(1),
                "file with no instructions",
            ));
        };
        root.span.start = start;
        Ok(Parsed {
            root,
            warnings,
            escape: self.escape,
            directives: self.directives.found,
        })
    }

    fn node_from_line(&self, line: &str) -> Result<Node, String> {
        let (cmd, flags, args) = self.split_command(line);
        let next = self.dispatch(&cmd.to_lowercase(), &args)?;
        Ok(Node {
            value: cmd,
            next: next.0,
            json: next.1,
            flags,
            original: line.to_string(),
            ..Node::default()
        })
    }

    fn split_command(&self, line: &str) -> (String, Vec<String>, String) {
        let parts = split_ws(line.trim(), Some(2));
        let cmd = parts[0].to_string();
        if parts.len() == 2 {
            let (rest, flags) = self.extract_flags(parts[1]);
            (cmd, flags, rest.trim().to_string())
        } else {
            (cmd, Vec::new(), String::new())
        }
    }

    /// Leading `--flag[=value]` words; returns the rest of the line and the flags.
    /// Quotes inside a flag word are removed and the escape token escapes the next byte.
    fn extract_flags(&self, line: &str) -> (String, Vec<String>) {
        #[derive(PartialEq)]
        enum Phase {
            Spaces,
            Word,
            Quote,
        }
        let is_space = |b: u8| matches!(b, 9..=13 | 32);
        let b = line.as_bytes();
        let mut words: Vec<String> = Vec::new();
        let mut phase = Phase::Spaces;
        let mut word: Vec<u8> = Vec::new();
        let mut quote = 0u8;
        let mut blank_ok = false;
        let esc = self.escape as u8;
        let finish = |w: &mut Vec<u8>| String::from_utf8_lossy(&std::mem::take(w)).into_owned();
        let mut pos = 0;
        loop {
            if pos >= b.len() {
                if phase != Phase::Spaces && word != b"--" && (blank_ok || !word.is_empty()) {
                    words.push(finish(&mut word));
                }
                break;
            }
            let ch = b[pos];
            match phase {
                Phase::Spaces => {
                    if is_space(ch) {
                        pos += 1;
                        continue;
                    }
                    if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                        return (line[pos..].to_string(), words);
                    }
                    phase = Phase::Word;
                }
                Phase::Word => {
                    if is_space(ch) {
                        phase = Phase::Spaces;
                        if word == b"--" {
                            return (line[pos..].to_string(), words);
                        }
                        if blank_ok || !word.is_empty() {
                            words.push(finish(&mut word));
                        }
                        word.clear();
                        blank_ok = false;
                        pos += 1;
                        continue;
                    }
                    if ch == b'\'' || ch == b'"' {
                        quote = ch;
                        blank_ok = true;
                        phase = Phase::Quote;
                        pos += 1;
                        continue;
                    }
                    if ch == esc {
                        pos += 1;
                        if pos == b.len() {
                            continue;
                        }
                    }
                    word.push(b[pos]);
                    pos += 1;
                }
                Phase::Quote => {
                    if ch == quote {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    if ch == esc {
                        pos += 1;
                        if pos == b.len() {
                            phase = Phase::Word;
                            continue;
                        }
                    }
                    word.push(b[pos]);
                    pos += 1;
                }
            }
        }
        (String::new(), words)
    }

    fn dispatch(&self, keyword: &str, rest: &str) -> Result<(Vec<Node>, bool), String> {
        match keyword {
            "add" | "copy" | "volume" => maybe_json_to_list(rest),
            "run" | "cmd" | "entrypoint" | "shell" => maybe_json(rest),
            "from" | "expose" => Ok((whitespace_delimited(rest), false)),
            "env" => Ok((self.name_val(rest, "ENV")?, false)),
            "label" => Ok((self.name_val(rest, "LABEL")?, false)),
            "arg" => Ok((
                self.parse_words(rest).into_iter().map(Node::word).collect(),
                false,
            )),
            "maintainer" | "user" | "workdir" | "stopsignal" => Ok((
                if rest.is_empty() {
                    vec![]
                } else {
                    vec![Node::word(rest)]
                },
                false,
            )),
            "healthcheck" => health_config(rest),
            "onbuild" => {
                if rest.is_empty() {
                    return Ok((vec![], false));
                }
                let inner = self.node_from_line(rest)?;
                Ok((
                    vec![Node {
                        children: vec![inner],
                        ..Node::default()
                    }],
                    false,
                ))
            }
            _ => Ok((vec![Node::word("")], false)),
        }
    }

    /// BuildKit's `parseWords`: whitespace-separated, quotes and escapes kept in the words.
    fn parse_words(&self, rest: &str) -> Vec<String> {
        parse_words(rest, self.escape)
    }

    fn name_val(&self, rest: &str, key: &str) -> Result<Vec<Node>, String> {
        let words = self.parse_words(rest);
        if words.is_empty() {
            return Ok(vec![]);
        }
        if !words[0].contains('=') {
            let parts = split_ws(rest, Some(2));
            if parts.len() < 2 {
                return Err(format!("{key} must have two arguments"));
            }
            return Ok(vec![
                Node::word(parts[0]),
                Node::word(parts[1]),
                Node::word(""),
            ]);
        }
        let mut out = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    super::ast::go_quote(&w)
                ));
            };
            out.push(Node::word(k));
            out.push(Node::word(v));
            out.push(Node::word("="));
        }
        Ok(out)
    }
}

/// The quote-aware word splitter used for ENV, LABEL and ARG; quotes and escapes stay.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let at_end = pos >= chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

fn whitespace_delimited(rest: &str) -> Vec<Node> {
    if rest.is_empty() {
        return vec![];
    }
    split_ws(rest, None).into_iter().map(Node::word).collect()
}

enum JsonArray {
    NotJson,
    NotStrings,
    Strings(Vec<String>),
}

fn parse_json(rest: &str) -> JsonArray {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return JsonArray::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => JsonArray::NotJson,
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonArray::NotStrings,
                }
            }
            JsonArray::Strings(out)
        }
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<(Vec<Node>, bool), String> {
    if rest.is_empty() {
        return Ok((vec![], false));
    }
    match parse_json(rest) {
        JsonArray::Strings(v) => Ok((v.into_iter().map(Node::word).collect(), true)),
        JsonArray::NotStrings => Err(NOT_STRINGS.into()),
        JsonArray::NotJson => Ok((vec![Node::word(rest)], false)),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<Node>, bool), String> {
    match parse_json(rest) {
        JsonArray::Strings(v) => Ok((v.into_iter().map(Node::word).collect(), true)),
        JsonArray::NotStrings => Err(NOT_STRINGS.into()),
        JsonArray::NotJson => Ok((whitespace_delimited(rest), false)),
    }
}

fn health_config(rest: &str) -> Result<(Vec<Node>, bool), String> {
    let sep = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((vec![], false));
    }
    let typ = &rest[..sep];
    let after = rest[sep..].trim_start();
    let (cmd, json) = maybe_json(after)?;
    let mut out = vec![Node::word(typ)];
    out.extend(cmd);
    Ok((out, json))
}

fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if node.keyword() == "onbuild" {
        if let Some(inner) = node.next.first().and_then(|n| n.children.first()) {
            node = inner;
        }
    }
    matches!(node.keyword().as_str(), "add" | "copy" | "run") && !node.json
}

/// Finds the heredoc markers (`<<EOF`, `<<-'EOF'`, `3<<EOF`) on an instruction line.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lex = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Parses one heredoc word (`^(\d*)<<(-?)\s*([^<]*)$`); `None` when it is not one.
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = src[..digits].parse::<u32>().unwrap_or(0);
    let lex = Lexer {
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    let words = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw_lex = Lexer {
        raw_quotes: true,
        ..lex
    };
    let raw = raw_lex
        .process_words(rest, &NoEnv)
        .map_err(|e| e.to_string())?;
    if raw.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let count = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: count(&words[0]) == count(&raw[0]),
        chomp,
        fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_spans_cover_continuations() {
        let p = parse("FROM a\nRUN a \\\n  b\n").unwrap();
        assert_eq!(p.instructions()[1].span, Span { start: 2, end: 3 });
    }

    #[test]
    fn unterminated_heredoc_names_its_start() {
        let e = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated heredoc"), "{}", e.message);
    }

    #[test]
    fn too_long_line_is_rejected() {
        let text = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE + 1));
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("max allowed size"));
    }
}
