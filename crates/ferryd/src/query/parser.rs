//! Recursive-descent parser for WQL statements.

use std::fmt;

use super::ast::{
    EventKind, EventQuery, Expr, Ident, Instance, Literal, Operand, Projection, PropertyPath,
    SelectQuery, Statement,
};
use super::lexer::{quote, Lexer, Token, TokenKind};

/// Maximum nesting of parentheses and `NOT` in one expression.
pub const MAX_NESTING: usize = 64;

/// Maximum number of `AND`/`OR`/`NOT` operators in one expression; this also
/// bounds the depth of the tree, keeping evaluation and `Display` shallow.
pub const MAX_OPERATORS: usize = 256;

/// Words that cannot be used as property or class names.
const RESERVED: [&str; 13] = [
    "SELECT", "FROM", "WHERE", "WITHIN", "AND", "OR", "NOT", "LIKE", "IS", "NULL", "TRUE", "FALSE",
    "ISA",
];

/// Returns true if `word` is a WQL keyword (ignoring case) and so cannot be a name.
pub fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// A syntax error, located at a character offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character (not byte) offset in the input.
    pub position: usize,
    /// What the parser expected at that point.
    pub expected: String,
    /// What it found instead (`end of query` at the end of the input).
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at position {}: expected {}, found {}",
            self.position, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses one WQL statement; the whole input must be consumed.
///
/// Never panics, and bounds recursion (see [`MAX_NESTING`] and
/// [`MAX_OPERATORS`]), whatever the input.
pub fn parse(input: &str) -> Result<Statement, ParseError> {
    let mut lexer = Lexer::new(input);
    let tok = lexer.next_token()?;
    let mut p = Parser {
        lexer,
        tok,
        nesting: 0,
        operators: 0,
    };
    p.statement()
}

/// Whether paths must be unqualified (plain select) or qualified (event query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Event,
}

const QUALIFIED: &str = "qualified property (TargetInstance.<name> or PreviousInstance.<name>)";
const UNQUALIFIED: &str =
    "unqualified property name (TargetInstance/PreviousInstance are only valid in event queries)";
const ISA_FIRST: &str = "TargetInstance ISA '<class>' as the first condition of an event query";

struct Parser {
    lexer: Lexer,
    /// The current (not yet consumed) token.
    tok: Token,
    nesting: usize,
    operators: usize,
}

type PResult<T> = Result<T, ParseError>;

impl Parser {
    /// Consumes the current token and returns it.
    fn advance(&mut self) -> PResult<Token> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    fn error(&self, expected: impl Into<String>) -> ParseError {
        ParseError {
            position: self.tok.pos,
            expected: expected.into(),
            found: self.tok.describe(),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok.kind, TokenKind::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> PResult<bool> {
        if self.is_kw(kw) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw)? {
            Ok(())
        } else {
            Err(self.error(kw))
        }
    }

    /// Consumes a non-reserved identifier.
    fn expect_name(&mut self, what: &str) -> PResult<Ident> {
        match &self.tok.kind {
            TokenKind::Ident(name) if !is_reserved(name) => {
                let ident = Ident {
                    name: name.clone(),
                    pos: self.tok.pos,
                };
                self.advance()?;
                Ok(ident)
            }
            _ => Err(self.error(what)),
        }
    }

    fn expect_end(&self, expected: &str) -> PResult<()> {
        if self.tok.kind == TokenKind::Eof {
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn statement(&mut self) -> PResult<Statement> {
        self.expect_kw("SELECT")?;
        let projection = self.projection()?;
        self.expect_kw("FROM")?;
        let class = self.expect_name("class name")?;
        match EventKind::from_class_name(&class.name) {
            Some(kind) => self.event(projection, kind),
            // WMI's system classes begin with "__": of those, ferry knows the events only.
            None if class.name.starts_with("__") => Err(ParseError {
                position: class.pos,
                expected: "a class (Job, File, Handler) or an event class \
                           (__InstanceCreationEvent, __InstanceModificationEvent, \
                           __InstanceDeletionEvent)"
                    .to_string(),
                found: format!("the unknown event class {}", quote(&class.name)),
            }),
            None => self.select(projection, class),
        }
    }

    fn projection(&mut self) -> PResult<Projection> {
        if self.tok.kind == TokenKind::Star {
            self.advance()?;
            return Ok(Projection::All);
        }
        let mut paths = vec![self.path("'*' or property name")?];
        while self.tok.kind == TokenKind::Comma {
            self.advance()?;
            paths.push(self.path("property name")?);
        }
        Ok(Projection::Paths(paths))
    }

    /// Parses `name` or `Instance.name` without checking the mode.
    fn path(&mut self, what: &str) -> PResult<PropertyPath> {
        let head = self.expect_name(what)?;
        if self.tok.kind != TokenKind::Dot {
            return Ok(PropertyPath {
                instance: None,
                name: head.name,
                pos: head.pos,
            });
        }
        let Some(instance) = Instance::from_keyword(&head.name) else {
            return Err(ParseError {
                position: head.pos,
                expected: "TargetInstance or PreviousInstance before '.'".to_string(),
                found: quote(&head.name),
            });
        };
        self.advance()?;
        let name = self.expect_name("property name after '.'")?;
        Ok(PropertyPath {
            instance: Some(instance),
            name: name.name,
            pos: head.pos,
        })
    }

    /// Rejects qualified paths in plain selects and unqualified ones in event queries.
    fn check_path(path: &PropertyPath, mode: Mode) -> PResult<()> {
        let expected = match (mode, path.instance) {
            (Mode::Plain, Some(_)) => UNQUALIFIED,
            (Mode::Event, None) => QUALIFIED,
            _ => return Ok(()),
        };
        Err(ParseError {
            position: path.pos,
            expected: expected.to_string(),
            found: quote(&path.to_string()),
        })
    }

    fn check_projection(projection: &Projection, mode: Mode) -> PResult<()> {
        if let Projection::Paths(paths) = projection {
            for p in paths {
                Self::check_path(p, mode)?;
            }
        }
        Ok(())
    }

    fn select(&mut self, projection: Projection, class: Ident) -> PResult<Statement> {
        Self::check_projection(&projection, Mode::Plain)?;
        let filter = if self.eat_kw("WHERE")? {
            let e = self.expr(Mode::Plain)?;
            self.expect_end("end of query")?;
            Some(e)
        } else {
            self.expect_end("WHERE or end of query")?;
            None
        };
        Ok(Statement::Select(SelectQuery {
            projection,
            class,
            filter,
        }))
    }

    fn event(&mut self, projection: Projection, kind: EventKind) -> PResult<Statement> {
        Self::check_projection(&projection, Mode::Event)?;
        let within_secs = if self.eat_kw("WITHIN")? {
            let secs = match self.tok.kind {
                TokenKind::Int(i) => i as f64,
                TokenKind::Real(r) => r,
                _ => return Err(self.error("number of seconds after WITHIN")),
            };
            if secs < 0.0 {
                return Err(self.error("non-negative number of seconds after WITHIN"));
            }
            self.advance()?;
            Some(secs)
        } else {
            None
        };
        if !self.is_kw("WHERE") {
            return Err(self.error(if within_secs.is_some() {
                "WHERE"
            } else {
                "WITHIN or WHERE"
            }));
        }
        self.advance()?;
        if !self.is_kw(Instance::Target.keyword()) {
            return Err(self.error(ISA_FIRST));
        }
        self.advance()?;
        if !self.eat_kw("ISA")? {
            return Err(self.error(format!("ISA ({ISA_FIRST})")));
        }
        let TokenKind::Str(target_class) = &self.tok.kind else {
            return Err(self.error("class name string after ISA"));
        };
        let target_class = Ident {
            name: target_class.clone(),
            pos: self.tok.pos,
        };
        self.advance()?;
        let filter = if self.eat_kw("AND")? {
            let e = self.expr(Mode::Event)?;
            self.expect_end("end of query")?;
            Some(e)
        } else {
            self.expect_end("AND or end of query")?;
            None
        };
        Ok(Statement::Event(EventQuery {
            projection,
            kind,
            within_secs,
            target_class,
            filter,
        }))
    }

    fn count_operator(&mut self) -> PResult<()> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ParseError {
                position: self.tok.pos,
                expected: format!("at most {MAX_OPERATORS} AND/OR/NOT operators"),
                found: "expression too complex".to_string(),
            });
        }
        Ok(())
    }

    fn enter(&mut self) -> PResult<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError {
                position: self.tok.pos,
                expected: format!("at most {MAX_NESTING} levels of parentheses/NOT"),
                found: "expression nested too deeply".to_string(),
            });
        }
        Ok(())
    }

    /// `or := and (OR and)*`
    fn expr(&mut self, mode: Mode) -> PResult<Expr> {
        let mut left = self.and(mode)?;
        while self.is_kw("OR") {
            self.count_operator()?;
            self.advance()?;
            let right = self.and(mode)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `and := unary (AND unary)*`
    fn and(&mut self, mode: Mode) -> PResult<Expr> {
        let mut left = self.unary(mode)?;
        while self.is_kw("AND") {
            self.count_operator()?;
            self.advance()?;
            let right = self.unary(mode)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `unary := NOT unary | primary`
    fn unary(&mut self, mode: Mode) -> PResult<Expr> {
        if self.is_kw("NOT") {
            self.enter()?;
            self.count_operator()?;
            self.advance()?;
            let inner = self.unary(mode)?;
            self.nesting -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary(mode)
    }

    /// `primary := '(' expr ')' | operand cmpop operand | operand [NOT] LIKE string | operand IS [NOT] NULL`
    fn primary(&mut self, mode: Mode) -> PResult<Expr> {
        if self.tok.kind == TokenKind::LParen {
            self.enter()?;
            self.advance()?;
            let e = self.expr(mode)?;
            if self.tok.kind != TokenKind::RParen {
                return Err(self.error("')'"));
            }
            self.advance()?;
            self.nesting -= 1;
            return Ok(e);
        }
        let operand = self.operand(mode)?;
        if let TokenKind::Op(op) = self.tok.kind {
            self.advance()?;
            let right = self.operand(mode)?;
            return Ok(Expr::Compare {
                left: operand,
                op,
                right,
            });
        }
        if self.eat_kw("IS")? {
            let negated = self.eat_kw("NOT")?;
            self.expect_kw("NULL")?;
            return Ok(Expr::IsNull { operand, negated });
        }
        let negated = self.eat_kw("NOT")?;
        if !self.eat_kw("LIKE")? {
            return Err(self.error(match (negated, mode) {
                (true, _) => "LIKE",
                (false, Mode::Plain) if self.is_kw("ISA") => {
                    "comparison operator, LIKE or IS (ISA is only valid in event queries)"
                }
                _ => "comparison operator, LIKE or IS",
            }));
        }
        let TokenKind::Str(pattern) = &self.tok.kind else {
            return Err(self.error("string pattern after LIKE"));
        };
        let pattern = pattern.clone();
        self.advance()?;
        Ok(Expr::Like {
            operand,
            pattern,
            negated,
        })
    }

    /// `operand := path | literal`
    fn operand(&mut self, mode: Mode) -> PResult<Operand> {
        let literal = match &self.tok.kind {
            TokenKind::Str(s) => Literal::String(s.clone()),
            TokenKind::Int(i) => Literal::Integer(*i),
            TokenKind::Real(r) => Literal::Real(*r),
            TokenKind::Ident(w) if w.eq_ignore_ascii_case("TRUE") => Literal::Boolean(true),
            TokenKind::Ident(w) if w.eq_ignore_ascii_case("FALSE") => Literal::Boolean(false),
            TokenKind::Ident(w) if w.eq_ignore_ascii_case("NULL") => Literal::Null,
            _ => {
                let path = self.path("operand (property name or literal)")?;
                if mode == Mode::Event && path.instance.is_none() {
                    if let Some(inst) = Instance::from_keyword(&path.name) {
                        let mut expected = format!("'.' after {}", inst.keyword());
                        if self.is_kw("ISA") {
                            expected.push_str(" (ISA is only valid as the first condition)");
                        }
                        return Err(self.error(expected));
                    }
                }
                Self::check_path(&path, mode)?;
                return Ok(Operand::Path(path));
            }
        };
        self.advance()?;
        Ok(Operand::Literal(literal))
    }
}
