//! The Dockerfile syntax tree: one [`Node`] per instruction, shaped like BuildKit's so that its
//! [`Node::dump`] reproduces BuildKit's `AST.Dump()` byte for byte (the conformance check).

use serde::Serialize;

/// 1-based, inclusive line range of a node in its Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    /// First line (1-based).
    pub start: usize,
    /// Last line, inclusive (a heredoc instruction ends on its terminator line).
    pub end: usize,
}

/// A heredoc attached to a RUN/COPY/ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The body as written, line endings kept, tabs not yet stripped.
    pub content: String,
    /// False when any part of the terminator was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and terminator.
    pub chomp: bool,
    /// `3<<EOF` gives 3; 0 when no descriptor was written.
    pub fd: u32,
}

impl Heredoc {
    /// The body after `<<-` tab stripping, when it applies.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One node of the tree. An instruction node has `value` = the keyword as written, `next` =
/// its arguments; an argument node has `value` = the word (ONBUILD's argument holds the inner
/// instruction in `children`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Node {
    /// Keyword (instruction) or word (argument).
    pub value: String,
    /// The argument chain.
    pub next: Vec<Node>,
    /// Nested instructions (the root's instructions, or ONBUILD's trigger).
    pub children: Vec<Node>,
    /// `--name=value` flags written before the arguments, quotes removed.
    pub flags: Vec<String>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// Heredocs opened on this instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// Where the node is in the file.
    pub span: Span,
}

impl Node {
    /// A bare word node.
    pub fn word(value: impl Into<String>) -> Node {
        Node {
            value: value.into(),
            ..Node::default()
        }
    }

    /// The instruction keyword in lower case (`from`, `run`, ...).
    pub fn keyword(&self) -> String {
        self.value.to_lowercase()
    }

    /// The argument words (not meaningful for ONBUILD).
    pub fn args(&self) -> Vec<&str> {
        self.next.iter().map(|n| n.value.as_str()).collect()
    }

    /// BuildKit's `Dump()` format, e.g. `(copy ["--from=a"] "x" "/y")`.
    pub fn dump(&self) -> String {
        let mut s = self.value.to_lowercase();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push('[');
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&quoted.join(" "));
            s.push(']');
        }
        for child in &self.children {
            s.push('(');
            s.push_str(&child.dump());
            s.push_str(")\n");
        }
        for n in &self.next {
            s.push(' ');
            if n.children.is_empty() {
                s.push_str(&go_quote(&n.value));
            } else {
                s.push_str(&n.dump());
            }
        }
        s.trim().to_string()
    }
}

/// Quotes a string the way Go's `strconv.Quote` does (the dump format depends on it).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `strconv.IsPrint`: graphic characters and the ASCII space.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Unicode format characters (category Cf) and non-characters are not printable in Go.
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xFFFE | 0xFFFF
        | 0xD800..=0xDFFF | 0xE000..=0xF8FF | 0x110BD | 0x1D173..=0x1D17A | 0xE0001..=0xE007F
        | 0xF0000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}"), r#""\x00""#);
        assert_eq!(go_quote("♥ 한국어"), "\"♥ 한국어\"");
        assert_eq!(go_quote("\u{ad}"), r#""\u00ad""#);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        let h = Heredoc {
            name: "E".into(),
            content: "\thello\n\tworld\n".into(),
            expand: true,
            chomp: true,
            fd: 0,
        };
        assert_eq!(h.body(), "hello\nworld\n");
    }
}
