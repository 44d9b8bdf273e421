//! Lexer and parser for Go `text/template` syntax, producing the tree the executor walks.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::value::Value;

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}:{column}: {message}")]
pub struct ParseError {
    /// Template name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// 0-based byte column within the line, as Go counts it.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// 1-based line and 0-based byte column of a byte offset, as Go's `ErrorContext` computes them.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl - 1,
        None => pos,
    };
    (line, col)
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Field,
    Identifier,
    Variable,
    Dot,
    Str,
    RawStr,
    Char,
    Number,
    Bool,
    Nil,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
    Eof,
    // Keywords.
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

#[derive(Clone, Debug)]
struct Item {
    kind: Kind,
    pos: usize,
    val: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Block
            | Kind::Break
            | Kind::Continue
            | Kind::Define
            | Kind::Else
            | Kind::End
            | Kind::If
            | Kind::Range
            | Kind::Template
            | Kind::With => write!(f, "<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let short: String = self.val.chars().take(10).collect();
                write!(f, "{}...", crate::gofmt::quote(&short))
            }
            _ => f.write_str(&crate::gofmt::quote(&self.val)),
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    items: Vec<Item>,
    paren_depth: usize,
}

type LexResult<T> = Result<T, (usize, String)>;

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn emit(&mut self, kind: Kind, start: usize) {
        self.items.push(Item {
            kind,
            pos: start,
            val: self.input[start..self.pos].to_string(),
        });
    }
    fn at_right_delim(&self) -> Option<bool> {
        let r = self.rest().as_bytes();
        if r.len() >= 4 && is_space(r[0]) && r[1] == b'-' && &r[2..4] == b"}}" {
            Some(true)
        } else if r.starts_with(b"}}") {
            Some(false)
        } else {
            None
        }
    }
    fn skip_leading_space(&mut self) {
        while self.pos < self.input.len() && is_space(self.input.as_bytes()[self.pos]) {
            self.pos += 1;
        }
    }

    fn run(mut self) -> LexResult<Vec<Item>> {
        loop {
            // Text up to the next left delimiter.
            let start = self.pos;
            let Some(off) = self.rest().find("{{") else {
                if self.pos < self.input.len() {
                    self.pos = self.input.len();
                    self.emit(Kind::Text, start);
                }
                self.items.push(Item {
                    kind: Kind::Eof,
                    pos: self.pos,
                    val: String::new(),
                });
                return Ok(self.items);
            };
            let delim = self.pos + off;
            let after = &self.input.as_bytes()[delim + 2..];
            let trim_left = after.len() >= 2 && after[0] == b'-' && is_space(after[1]);
            let mut text_end = delim;
            if trim_left {
                while text_end > start && is_space(self.input.as_bytes()[text_end - 1]) {
                    text_end -= 1;
                }
            }
            if text_end > start {
                self.items.push(Item {
                    kind: Kind::Text,
                    pos: start,
                    val: self.input[start..text_end].to_string(),
                });
            }
            self.pos = delim + 2 + if trim_left { 2 } else { 0 };
            if self.rest().starts_with("/*") {
                self.lex_comment(delim)?;
                continue;
            }
            self.items.push(Item {
                kind: Kind::LeftDelim,
                pos: delim,
                val: "{{".into(),
            });
            self.paren_depth = 0;
            self.lex_inside()?;
        }
    }

    fn lex_comment(&mut self, delim: usize) -> LexResult<()> {
        let Some(end) = self.rest().find("*/") else {
            return Err((delim, "unclosed comment".into()));
        };
        self.pos += end + 2;
        match self.at_right_delim() {
            Some(trim) => {
                self.pos += if trim { 4 } else { 2 };
                if trim {
                    self.skip_leading_space();
                }
                Ok(())
            }
            None => Err((delim, "comment ends before closing delimiter".into())),
        }
    }

    fn lex_inside(&mut self) -> LexResult<()> {
        loop {
            if let Some(trim) = self.at_right_delim() {
                if self.paren_depth > 0 {
                    return Err((self.pos, "unclosed left paren".into()));
                }
                let start = self.pos;
                self.pos += if trim { 4 } else { 2 };
                self.items.push(Item {
                    kind: Kind::RightDelim,
                    pos: start,
                    val: "}}".into(),
                });
                if trim {
                    self.skip_leading_space();
                }
                return Ok(());
            }
            let start = self.pos;
            let Some(c) = self.peek() else {
                return Err((start, "unclosed action".into()));
            };
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    while self.pos < self.input.len() && is_space(self.input.as_bytes()[self.pos]) {
                        self.pos += 1;
                    }
                    // The last space may start a trim-marked right delimiter " -}}".
                    self.pos -= 1;
                    if self.at_right_delim() != Some(true) {
                        self.pos += 1;
                    }
                    if self.pos > start {
                        self.emit(Kind::Space, start);
                    }
                }
                '=' => {
                    self.pos += 1;
                    self.emit(Kind::Assign, start);
                }
                ':' => {
                    self.pos += 1;
                    if self.peek() != Some('=') {
                        return Err((start, "expected :=".into()));
                    }
                    self.pos += 1;
                    self.emit(Kind::Declare, start);
                }
                '|' => {
                    self.pos += 1;
                    self.emit(Kind::Pipe, start);
                }
                ',' => {
                    self.pos += 1;
                    self.emit(Kind::Comma, start);
                }
                '(' => {
                    self.pos += 1;
                    self.paren_depth += 1;
                    self.emit(Kind::LeftParen, start);
                }
                ')' => {
                    self.pos += 1;
                    if self.paren_depth == 0 {
                        return Err((start, "unexpected right paren".into()));
                    }
                    self.paren_depth -= 1;
                    self.emit(Kind::RightParen, start);
                }
                '"' => self.lex_quoted(start, '"', Kind::Str, "quoted string")?,
                '`' => {
                    self.pos += 1;
                    match self.rest().find('`') {
                        Some(e) => self.pos += e + 1,
                        None => return Err((start, "unterminated raw quoted string".into())),
                    }
                    self.emit(Kind::RawStr, start);
                }
                '\'' => self.lex_quoted(start, '\'', Kind::Char, "character constant")?,
                '$' => {
                    self.pos += 1;
                    self.lex_field_or_var(start, Kind::Variable)?;
                }
                '.' => {
                    let next = self.input.as_bytes().get(self.pos + 1).copied();
                    if next.is_some_and(|b| b.is_ascii_digit()) {
                        self.lex_number(start)?;
                    } else {
                        self.pos += 1;
                        self.lex_field_or_var(start, Kind::Field)?;
                    }
                }
                '+' | '-' | '0'..='9' => self.lex_number(start)?,
                c if is_alnum(c) => {
                    while let Some(c) = self.peek() {
                        if !is_alnum(c) {
                            break;
                        }
                        self.pos += c.len_utf8();
                    }
                    let word = &self.input[start..self.pos];
                    let kind = match word {
                        "block" => Kind::Block,
                        "break" => Kind::Break,
                        "continue" => Kind::Continue,
                        "define" => Kind::Define,
                        "else" => Kind::Else,
                        "end" => Kind::End,
                        "if" => Kind::If,
                        "range" => Kind::Range,
                        "template" => Kind::Template,
                        "with" => Kind::With,
                        "nil" => Kind::Nil,
                        "true" | "false" => Kind::Bool,
                        _ => Kind::Identifier,
                    };
                    if !self.at_terminator() {
                        return Err((self.pos, format!("bad character {}", go_char(self.peek()))));
                    }
                    self.emit(kind, start);
                }
                c => {
                    return Err((
                        start,
                        format!("unrecognized character in action: {}", go_char(Some(c))),
                    ));
                }
            }
        }
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.rest().starts_with("}}"),
        }
    }

    fn lex_field_or_var(&mut self, start: usize, kind: Kind) -> LexResult<()> {
        if self.at_terminator() {
            self.emit(
                if kind == Kind::Variable {
                    Kind::Variable
                } else {
                    Kind::Dot
                },
                start,
            );
            return Ok(());
        }
        while let Some(c) = self.peek() {
            if !is_alnum(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        if !self.at_terminator() {
            return Err((self.pos, format!("bad character {}", go_char(self.peek()))));
        }
        self.emit(kind, start);
        Ok(())
    }

    /// A `"string"` or `'c'` constant: escapes skip the next character; a newline ends it badly.
    fn lex_quoted(&mut self, start: usize, quote: char, kind: Kind, what: &str) -> LexResult<()> {
        self.pos += 1;
        loop {
            match self.peek() {
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('\n') | None => return Err((start, format!("unterminated {what}"))),
                        Some(c) => self.pos += c.len_utf8(),
                    }
                }
                Some('\n') | None => return Err((start, format!("unterminated {what}"))),
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(c) => self.pos += c.len_utf8(),
            }
        }
        self.emit(kind, start);
        Ok(())
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }
    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    fn lex_number(&mut self, start: usize) -> LexResult<()> {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if self.peek().is_some_and(is_alnum) {
            self.pos += self.peek().map_or(0, char::len_utf8);
            return Err((
                start,
                format!("bad number syntax: {:?}", &self.input[start..self.pos]),
            ));
        }
        self.emit(Kind::Number, start);
        Ok(())
    }
}

fn go_char(c: Option<char>) -> String {
    match c {
        Some(c) => format!("U+{:04X} '{}'", c as u32, c),
        None => "EOF".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tree

/// A node of a template body.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(Arc<str>),
    Action {
        pipe: Pipe,
    },
    If {
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    },
    Range {
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    },
    With {
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    },
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

/// A pipeline with optional variable declarations.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function or value and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    Var {
        pos: usize,
        name: String,
        idents: Vec<String>,
    },
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    Number {
        pos: usize,
        text: String,
        value: Value,
    },
    Str {
        pos: usize,
        quoted: String,
        value: Arc<str>,
    },
    Ident {
        pos: usize,
        name: String,
    },
    Pipe(Box<Pipe>),
    Chain {
        pos: usize,
        node: Box<Arg>,
        idents: Vec<String>,
    },
}

impl Arg {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Var { pos, .. }
            | Arg::Dot(pos)
            | Arg::Nil(pos)
            | Arg::Bool(pos, _)
            | Arg::Number { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Ident { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Var { name, idents, .. } => {
                f.write_str(name)?;
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Number { text, .. } => f.write_str(text),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Ident { name, .. } => f.write_str(name),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain { node, idents, .. } => {
                match **node {
                    Arg::Pipe(_) => write!(f, "{node}")?,
                    _ => write!(f, "{node}")?,
                }
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A parsed template set: the main body and the `define`d/`block` templates.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Vec<Node>>,
}

/// Maximum nesting of control structures and parenthesised pipelines.
const MAX_NESTING: usize = 100;

enum End {
    Close(usize),
    Else(usize),
    Eof(usize),
}

struct Parser<'a> {
    name: &'a str,
    text: &'a str,
    items: Vec<Item>,
    idx: usize,
    vars: Vec<String>,
    range_depth: usize,
    nesting: usize,
    defines: HashMap<String, Vec<Node>>,
    is_func: &'a dyn Fn(&str) -> bool,
}

type PResult<T> = Result<T, ParseError>;

/// Parses `text` as template `name`; `is_func` tells which function names exist.
pub(crate) fn parse(name: &str, text: &str, is_func: &dyn Fn(&str) -> bool) -> PResult<Tree> {
    let lexer = Lexer {
        input: text,
        pos: 0,
        items: Vec::new(),
        paren_depth: 0,
    };
    let items = lexer.run().map_err(|(pos, message)| {
        let (line, column) = line_col(text, pos);
        ParseError {
            name: name.into(),
            line,
            column,
            message,
        }
    })?;
    let mut p = Parser {
        name,
        text,
        items,
        idx: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        nesting: 0,
        defines: HashMap::new(),
        is_func,
    };
    let mut root = Vec::new();
    loop {
        let it = p.peek_non_space_after_delim();
        if let Some(true) = it {
            // "{{define": a definition at top level.
            p.next(); // {{
            p.next_non_space(); // define
            p.parse_definition()?;
            continue;
        }
        match p.text_or_action()? {
            Ok(node) => root.push(node),
            Err(End::Eof(_)) => break,
            Err(End::Close(pos)) => return Err(p.err_at(pos, "unexpected {{end}}")),
            Err(End::Else(pos)) => return Err(p.err_at(pos, "unexpected {{else}}")),
        }
    }
    let main = name.to_string();
    p.add_definition(&main, root.clone(), 0)?;
    let defines = std::mem::take(&mut p.defines);
    Ok(Tree { root, defines })
}

fn is_empty_tree(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

impl<'a> Parser<'a> {
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        let (line, column) = line_col(self.text, pos);
        ParseError {
            name: self.name.into(),
            line,
            column,
            message: msg.into(),
        }
    }

    fn next(&mut self) -> Item {
        let it = self.items[self.idx.min(self.items.len() - 1)].clone();
        if self.idx < self.items.len() - 1 {
            self.idx += 1;
        }
        it
    }
    fn peek(&self) -> &Item {
        &self.items[self.idx.min(self.items.len() - 1)]
    }
    fn backup(&mut self) {
        self.idx = self.idx.saturating_sub(1);
    }
    fn next_non_space(&mut self) -> Item {
        loop {
            let it = self.next();
            if it.kind != Kind::Space {
                return it;
            }
        }
    }
    fn peek_non_space(&mut self) -> Item {
        let save = self.idx;
        let it = self.next_non_space();
        self.idx = save;
        it
    }
    /// Whether the next tokens are `{{` then (after spaces) `define`; `None` if not at `{{`.
    fn peek_non_space_after_delim(&self) -> Option<bool> {
        if self.peek().kind != Kind::LeftDelim {
            return None;
        }
        let mut i = self.idx + 1;
        while i < self.items.len() && self.items[i].kind == Kind::Space {
            i += 1;
        }
        Some(i < self.items.len() && self.items[i].kind == Kind::Define)
    }
    fn unexpected(&self, it: &Item, context: &str) -> ParseError {
        self.err_at(it.pos, format!("unexpected {it} in {context}"))
    }
    fn expect(&mut self, kind: Kind, context: &str) -> PResult<Item> {
        let it = self.next_non_space();
        if it.kind != kind {
            return Err(self.unexpected(&it, context));
        }
        Ok(it)
    }

    fn add_definition(&mut self, name: &str, body: Vec<Node>, pos: usize) -> PResult<()> {
        match self.defines.get(name) {
            Some(existing) if !is_empty_tree(existing) => {
                if !is_empty_tree(&body) {
                    return Err(self.err_at(
                        pos,
                        format!(
                            "template: multiple definition of template {}",
                            crate::gofmt::quote(name)
                        ),
                    ));
                }
            }
            _ => {
                self.defines.insert(name.to_string(), body);
            }
        }
        Ok(())
    }

    fn parse_template_name(&mut self, it: &Item, context: &str) -> PResult<String> {
        match it.kind {
            Kind::Str | Kind::RawStr => unquote(&it.val).map_err(|e| self.err_at(it.pos, e)),
            _ => Err(self.unexpected(it, context)),
        }
    }

    fn with_fresh_scope<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        let vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let rd = std::mem::replace(&mut self.range_depth, 0);
        let r = f(self);
        self.vars = vars;
        self.range_depth = rd;
        r
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let it = self.next_non_space();
        let name = self.parse_template_name(&it, "define clause")?;
        self.expect(Kind::RightDelim, "define clause")?;
        let body = self.with_fresh_scope(|p| {
            let (list, end) = p.item_list()?;
            match end {
                End::Close(_) => Ok(list),
                End::Else(pos) => Err(p.err_at(pos, "unexpected {{else}} in define clause")),
                End::Eof(pos) => Err(p.err_at(pos, "unexpected EOF")),
            }
        })?;
        self.add_definition(&name, body, it.pos)
    }

    /// Parses nodes until `{{end}}`, `{{else}}` or EOF.
    fn item_list(&mut self) -> PResult<(Vec<Node>, End)> {
        let mut list = Vec::new();
        loop {
            match self.text_or_action()? {
                Ok(n) => list.push(n),
                Err(End::Eof(pos)) => return Ok((list, End::Eof(pos))),
                Err(e) => return Ok((list, e)),
            }
        }
    }

    fn text_or_action(&mut self) -> PResult<Result<Node, End>> {
        let it = self.next_non_space();
        match it.kind {
            Kind::Text => Ok(Ok(Node::Text(it.val.into()))),
            Kind::LeftDelim => self.action(),
            Kind::Eof => Ok(Err(End::Eof(it.pos))),
            _ => Err(self.unexpected(&it, "input")),
        }
    }

    fn action(&mut self) -> PResult<Result<Node, End>> {
        let it = self.next_non_space();
        match it.kind {
            Kind::Block => return self.block_control().map(Ok),
            Kind::Break | Kind::Continue => {
                let word = if it.kind == Kind::Break {
                    "break"
                } else {
                    "continue"
                };
                let t = self.next_non_space();
                if t.kind != Kind::RightDelim {
                    return Err(self.unexpected(&t, &format!("{{{{{word}}}}}")));
                }
                if self.range_depth == 0 {
                    return Err(
                        self.err_at(it.pos, format!("{{{{{word}}}}} outside {{{{range}}}}"))
                    );
                }
                return Ok(Ok(if it.kind == Kind::Break {
                    Node::Break
                } else {
                    Node::Continue
                }));
            }
            Kind::Else => {
                let p = self.peek_non_space();
                if p.kind == Kind::If || p.kind == Kind::With {
                    // "else if" / "else with": the chained control consumes the rest.
                    return Ok(Err(End::Else(it.pos)));
                }
                self.expect(Kind::RightDelim, "else")?;
                return Ok(Err(End::Else(it.pos)));
            }
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                return Ok(Err(End::Close(it.pos)));
            }
            Kind::If => return self.control("if").map(Ok),
            Kind::Range => return self.control("range").map(Ok),
            Kind::With => return self.control("with").map(Ok),
            Kind::Template => return self.template_control().map(Ok),
            _ => {}
        }
        self.backup();
        let pipe = self.pipeline("command", Kind::RightDelim)?;
        Ok(Ok(Node::Action { pipe }))
    }

    fn nest<T>(&mut self, pos: usize, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.nesting >= MAX_NESTING {
            return Err(self.err_at(
                pos,
                format!("template nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        self.nesting += 1;
        let r = f(self);
        self.nesting -= 1;
        r
    }

    fn control(&mut self, context: &'static str) -> PResult<Node> {
        let pos = self.peek().pos;
        self.nest(pos, |p| {
            let nvars = p.vars.len();
            let r = p.control_inner(context);
            p.vars.truncate(nvars);
            r
        })
    }

    fn control_inner(&mut self, context: &'static str) -> PResult<Node> {
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            End::Close(_) => None,
            End::Eof(pos) => return Err(self.err_at(pos, "unexpected EOF")),
            End::Else(_) => {
                let p = self.peek_non_space();
                if (context == "if" && p.kind == Kind::If)
                    || (context == "with" && p.kind == Kind::With)
                {
                    self.next_non_space();
                    Some(vec![self.control(context)?])
                } else {
                    let (l, e) = self.item_list()?;
                    match e {
                        End::Close(_) => Some(l),
                        End::Else(pos) => {
                            return Err(self.err_at(pos, "expected end; found {{else}}"));
                        }
                        End::Eof(pos) => return Err(self.err_at(pos, "unexpected EOF")),
                    }
                }
            }
        };
        Ok(match context {
            "if" => Node::If {
                pipe,
                list,
                else_list,
            },
            "range" => Node::Range {
                pipe,
                list,
                else_list,
            },
            _ => Node::With {
                pipe,
                list,
                else_list,
            },
        })
    }

    fn template_control(&mut self) -> PResult<Node> {
        let it = self.next_non_space();
        let name = self.parse_template_name(&it, "template clause")?;
        let pipe = if self.next_non_space().kind != Kind::RightDelim {
            self.backup();
            Some(self.pipeline("template clause", Kind::RightDelim)?)
        } else {
            None
        };
        Ok(Node::Template {
            pos: it.pos,
            name,
            pipe,
        })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let it = self.next_non_space();
        let name = self.parse_template_name(&it, "block clause")?;
        let pipe = self.pipeline("block clause", Kind::RightDelim)?;
        let body = self.nest(it.pos, |p| {
            p.with_fresh_scope(|p| {
                let (list, end) = p.item_list()?;
                match end {
                    End::Close(_) => Ok(list),
                    End::Else(pos) => Err(p.err_at(pos, "unexpected {{else}} in block clause")),
                    End::Eof(pos) => Err(p.err_at(pos, "unexpected EOF")),
                }
            })
        })?;
        self.add_definition(&name, body, it.pos)?;
        Ok(Node::Template {
            pos: it.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> PResult<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations: "$x :=", "$x =", "$k, $v :=" (range only).
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let save = self.idx;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    if pipe.is_assign && !self.vars.contains(&v.val) {
                        return Err(self.err_at(v.pos, format!("undefined variable {:?}", v.val)));
                    }
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    break;
                }
                Kind::Comma => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        let p = self.peek_non_space();
                        if matches!(p.kind, Kind::Variable | Kind::RightDelim | Kind::RightParen) {
                            continue;
                        }
                        return Err(self.err_at(p.pos, "range can only initialize variables"));
                    }
                    return Err(
                        self.err_at(next.pos, format!("too many declarations in {context}"))
                    );
                }
                _ => {
                    self.idx = save;
                    break;
                }
            }
        }
        loop {
            let it = self.next_non_space();
            if it.kind == end {
                if pipe.cmds.is_empty() {
                    return Err(self.err_at(it.pos, format!("missing value for {context}")));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if matches!(
                        c.args[0],
                        Arg::Bool(..)
                            | Arg::Dot(_)
                            | Arg::Nil(_)
                            | Arg::Number { .. }
                            | Arg::Str { .. }
                    ) {
                        return Err(self.err_at(
                            c.args[0].pos(),
                            format!("non executable command in pipeline stage {}", i + 1),
                        ));
                    }
                }
                return Ok(pipe);
            }
            match it.kind {
                Kind::Bool
                | Kind::Char
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawStr
                | Kind::Str
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&it, context)),
            }
        }
    }

    fn command(&mut self) -> PResult<Cmd> {
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            // Skip leading spaces.
            while self.peek().kind == Kind::Space {
                self.next();
            }
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let it = self.next();
            match it.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&it, "operand")),
            }
            break;
        }
        if args.is_empty() {
            let pos = self.peek().pos;
            return Err(self.err_at(pos, "empty command"));
        }
        Ok(Cmd { args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(term));
        }
        let chain_pos = self.peek().pos;
        let mut idents = Vec::new();
        while self.peek().kind == Kind::Field {
            let it = self.next();
            idents.push(it.val[1..].to_string());
        }
        Ok(Some(match term {
            Arg::Field {
                idents: mut first, ..
            } => {
                first.extend(idents);
                Arg::Field {
                    pos: chain_pos,
                    idents: first,
                }
            }
            Arg::Var {
                name,
                idents: mut first,
                ..
            } => {
                first.extend(idents);
                Arg::Var {
                    pos: chain_pos,
                    name,
                    idents: first,
                }
            }
            Arg::Bool(..) | Arg::Str { .. } | Arg::Number { .. } | Arg::Nil(_) | Arg::Dot(_) => {
                return Err(self.err_at(
                    chain_pos,
                    format!("unexpected . after term {:?}", term.to_string()),
                ));
            }
            other => Arg::Chain {
                pos: chain_pos,
                node: Box::new(other),
                idents,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let it = self.next_non_space();
        Ok(Some(match it.kind {
            Kind::Identifier => {
                if !(self.is_func)(&it.val) {
                    return Err(self.err_at(it.pos, format!("function {:?} not defined", it.val)));
                }
                Arg::Ident {
                    pos: it.pos,
                    name: it.val,
                }
            }
            Kind::Dot => Arg::Dot(it.pos),
            Kind::Nil => Arg::Nil(it.pos),
            Kind::Variable => {
                if !self.vars.contains(&it.val) {
                    return Err(self.err_at(it.pos, format!("undefined variable {:?}", it.val)));
                }
                Arg::Var {
                    pos: it.pos,
                    name: it.val,
                    idents: Vec::new(),
                }
            }
            Kind::Field => Arg::Field {
                pos: it.pos,
                idents: vec![it.val[1..].to_string()],
            },
            Kind::Bool => Arg::Bool(it.pos, it.val == "true"),
            Kind::Number | Kind::Char => {
                let value = parse_number(&it.val, it.kind == Kind::Char)
                    .map_err(|e| self.err_at(it.pos, e))?;
                Arg::Number {
                    pos: it.pos,
                    text: it.val,
                    value,
                }
            }
            Kind::LeftParen => {
                let pipe = self.nest(it.pos, |p| {
                    p.pipeline("parenthesized pipeline", Kind::RightParen)
                })?;
                Arg::Pipe(Box::new(pipe))
            }
            Kind::Str | Kind::RawStr => {
                let value = unquote(&it.val).map_err(|e| self.err_at(it.pos, e))?;
                Arg::Str {
                    pos: it.pos,
                    quoted: it.val,
                    value: value.into(),
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Go's `strconv.Unquote` for the string forms the lexer accepts.
fn unquote(s: &str) -> Result<String, String> {
    if let Some(raw) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Ok(raw.replace('\r', ""));
    }
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or("invalid syntax")?;
    unescape(inner, '"')
}

fn unescape(inner: &str, quote: char) -> Result<String, String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or("invalid syntax")?;
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            c if c == quote => out.push(c),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                let v = u32::from_str_radix(&hex, 16).map_err(|_| "invalid syntax")?;
                if hex.len() != n {
                    return Err("invalid syntax".into());
                }
                if e == 'x' {
                    // A byte escape: only ASCII keeps the string valid UTF-8 here.
                    out.push(char::from_u32(v).filter(|_| v < 0x80).unwrap_or('\u{FFFD}'));
                } else {
                    out.push(char::from_u32(v).ok_or("invalid syntax")?);
                }
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let oct = format!("{e}{rest}");
                let v = u32::from_str_radix(&oct, 8).map_err(|_| "invalid syntax")?;
                if oct.len() != 3 || v > 255 {
                    return Err("invalid syntax".into());
                }
                out.push(char::from_u32(v).filter(|_| v < 0x80).unwrap_or('\u{FFFD}'));
            }
            _ => return Err("invalid syntax".into()),
        }
    }
    Ok(out)
}

/// Go's ideal constant of a number or character literal: an `int` unless it has a fraction or exponent.
fn parse_number(text: &str, is_char: bool) -> Result<Value, String> {
    if is_char {
        let inner = &text[1..text.len() - 1];
        let s =
            unescape(inner, '\'').map_err(|_| format!("malformed character constant: {text}"))?;
        let mut cs = s.chars();
        return match (cs.next(), cs.next()) {
            (Some(c), None) => Ok(Value::Int(c as i64)),
            _ => Err(format!("malformed character constant: {text}")),
        };
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains(['.', 'p']) {
            None
        } else {
            Some(i128::from_str_radix(h, 16))
        }
    } else if let Some(o) = lower.strip_prefix("0o") {
        Some(i128::from_str_radix(o, 8))
    } else if let Some(b) = lower.strip_prefix("0b") {
        Some(i128::from_str_radix(b, 2))
    } else if !body.contains(['.', 'e', 'E']) {
        if body.len() > 1 && body.starts_with('0') {
            Some(i128::from_str_radix(&body[1..], 8))
        } else {
            Some(body.parse::<i128>())
        }
    } else {
        None
    };
    match int {
        Some(Ok(v)) => {
            let v = if neg { -v } else { v };
            i64::try_from(v)
                .map(Value::Int)
                .map_err(|_| format!("{text} overflows int"))
        }
        Some(Err(_)) => Err(format!("illegal number syntax: {text:?}")),
        None => match body.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(if neg { -f } else { f })),
            _ => Err(format!("illegal number syntax: {text:?}")),
        },
    }
}
