//! On-demand tokenizer for WQL.
//!
//! Keywords are not distinguished from identifiers here; the parser matches
//! them case-insensitively. Characters that start no token become
//! [`TokenKind::Unknown`] so the parser can report what it expected instead.

use super::ast::CmpOp;
use super::parser::ParseError;

/// The kind (and value) of a token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// `[A-Za-z_][A-Za-z0-9_]*` (including keywords).
    Ident(String),
    /// A string literal, with escapes resolved.
    Str(String),
    /// An integer literal (optionally negative).
    Int(i64),
    /// A finite real literal (optionally negative).
    Real(f64),
    /// `*`
    Star,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// A comparison operator.
    Op(CmpOp),
    /// A character that cannot start any token.
    Unknown(char),
    /// End of input.
    Eof,
}

/// A token with its source position and raw text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What was read.
    pub kind: TokenKind,
    /// 0-based character offset of the first character.
    pub pos: usize,
    /// The source text of the token (empty at end of input).
    pub text: String,
}

impl Token {
    /// Describes the token for error messages, e.g. `'WHERE'` or `end of query`.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Eof => "end of query".to_string(),
            TokenKind::Unknown(c) => format!("unexpected character {}", quote(&c.to_string())),
            TokenKind::Str(_) => format!("string {}", truncate(&self.text)),
            _ => quote(&self.text),
        }
    }
}

/// Wraps text in single quotes for error messages, truncating long text.
pub fn quote(text: &str) -> String {
    format!("'{}'", truncate(text))
}

fn truncate(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// A tokenizer producing one token per call to [`Lexer::next_token`].
#[derive(Debug)]
pub struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    /// Creates a lexer over `input`.
    pub fn new(input: &str) -> Self {
        Lexer {
            chars: input.chars().collect(),
            pos: 0,
        }
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn text(&self, start: usize) -> String {
        self.chars[start..self.pos].iter().collect()
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token {
        Token {
            kind,
            pos: start,
            text: self.text(start),
        }
    }

    /// Reads the next token; returns [`TokenKind::Eof`] forever at the end.
    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek_at(0).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(c) = self.peek_at(0) else {
            return Ok(self.token(TokenKind::Eof, start));
        };
        let next = self.peek_at(1);
        let (kind, len) = match c {
            c if c.is_ascii_alphabetic() || c == '_' => return Ok(self.ident(start)),
            c if c.is_ascii_digit() => return self.number(start),
            '-' if next.is_some_and(|n| n.is_ascii_digit()) => return self.number(start),
            '\'' | '"' => return self.string(start, c),
            '*' => (TokenKind::Star, 1),
            ',' => (TokenKind::Comma, 1),
            '.' => (TokenKind::Dot, 1),
            '(' => (TokenKind::LParen, 1),
            ')' => (TokenKind::RParen, 1),
            '=' => (TokenKind::Op(CmpOp::Eq), 1),
            '<' => match next {
                Some('=') => (TokenKind::Op(CmpOp::Le), 2),
                Some('>') => (TokenKind::Op(CmpOp::Ne), 2),
                _ => (TokenKind::Op(CmpOp::Lt), 1),
            },
            '>' => match next {
                Some('=') => (TokenKind::Op(CmpOp::Ge), 2),
                _ => (TokenKind::Op(CmpOp::Gt), 1),
            },
            '!' if next == Some('=') => (TokenKind::Op(CmpOp::Ne), 2),
            c => (TokenKind::Unknown(c), 1),
        };
        self.pos += len;
        Ok(self.token(kind, start))
    }

    fn ident(&mut self, start: usize) -> Token {
        while self
            .peek_at(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.token(TokenKind::Ident(self.text(start)), start)
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - from
    }

    fn number(&mut self, start: usize) -> Result<Token, ParseError> {
        if self.peek_at(0) == Some('-') {
            self.pos += 1;
        }
        self.digits();
        let mut real = false;
        if self.peek_at(0) == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.digits();
            real = true;
        }
        let mut malformed = false;
        if matches!(self.peek_at(0), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek_at(0), Some('+' | '-')) {
                self.pos += 1;
            }
            malformed = self.digits() == 0;
            real = true;
        }
        // A number must not run straight into a name or another fraction.
        let glued = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        if malformed
            || self
                .peek_at(0)
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            || (self.peek_at(0) == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()))
        {
            while self.peek_at(0).is_some_and(glued) {
                self.pos += 1;
            }
            return Err(self.number_error(start, "number"));
        }
        let text = self.text(start);
        let kind = if real {
            match text.parse::<f64>() {
                Ok(r) if r.is_finite() => TokenKind::Real(r),
                _ => return Err(self.number_error(start, "finite number")),
            }
        } else {
            match text.parse::<i64>() {
                Ok(i) => TokenKind::Int(i),
                Err(_) => return Err(self.number_error(start, "integer within 64-bit range")),
            }
        };
        Ok(self.token(kind, start))
    }

    fn number_error(&self, start: usize, expected: &str) -> ParseError {
        ParseError {
            position: start,
            expected: expected.to_string(),
            found: quote(&self.text(start)),
        }
    }

    fn string(&mut self, start: usize, q: char) -> Result<Token, ParseError> {
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek_at(0) else {
                return Err(ParseError {
                    position: self.pos,
                    expected: format!("closing {q} of string starting at position {start}"),
                    found: "end of query".to_string(),
                });
            };
            self.pos += 1;
            match c {
                '\\' => {
                    let escaped = match self.peek_at(0) {
                        Some('\\') => '\\',
                        Some('\'') => '\'',
                        Some('"') => '"',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        None => continue, // reported as unterminated
                        Some(other) => {
                            return Err(ParseError {
                                position: self.pos - 1,
                                expected: r#"escape sequence (\\, \', \", \n or \t)"#.to_string(),
                                found: quote(&format!("\\{other}")),
                            })
                        }
                    };
                    self.pos += 1;
                    value.push(escaped);
                }
                c if c == q => {
                    if q == '\'' && self.peek_at(0) == Some('\'') {
                        self.pos += 1;
                        value.push('\'');
                    } else {
                        return Ok(self.token(TokenKind::Str(value), start));
                    }
                }
                c => value.push(c),
            }
        }
    }
}
