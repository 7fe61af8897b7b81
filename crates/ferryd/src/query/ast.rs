//! Syntax tree for parsed WQL statements.
//!
//! Every type implements [`fmt::Display`], producing WQL text that parses back
//! to the same tree (apart from source positions). Positions are 0-based
//! character offsets into the original query text.

use std::fmt;

/// A complete WQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT ... FROM <class> [WHERE ...]`
    Select(SelectQuery),
    /// `SELECT ... FROM __Instance*Event [WITHIN n] WHERE TargetInstance ISA '<class>' [AND ...]`
    Event(EventQuery),
}

/// A plain data query over the instances of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectQuery {
    /// Properties to return.
    pub projection: Projection,
    /// Queried class, as written (not validated by the parser).
    pub class: Ident,
    /// Optional `WHERE` condition; paths in it are always unqualified.
    pub filter: Option<Expr>,
}

/// An event subscription query.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// Properties to return; paths are always qualified.
    pub projection: Projection,
    /// Which intrinsic event class was queried.
    pub kind: EventKind,
    /// Polling interval from `WITHIN`, in seconds (finite, non-negative).
    pub within_secs: Option<f64>,
    /// Class named by the mandatory `TargetInstance ISA '<class>'` test (its position is
    /// that of the string).
    pub target_class: Ident,
    /// The condition after `ISA '<class>' AND`, if any; paths in it are
    /// always qualified.
    pub filter: Option<Expr>,
}

/// The intrinsic event class of an [`EventQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `__InstanceCreationEvent`
    Creation,
    /// `__InstanceModificationEvent`
    Modification,
    /// `__InstanceDeletionEvent`
    Deletion,
}

impl EventKind {
    /// All event kinds.
    pub const ALL: [EventKind; 3] = [
        EventKind::Creation,
        EventKind::Modification,
        EventKind::Deletion,
    ];

    /// The canonical WQL class name, e.g. `__InstanceCreationEvent`.
    pub fn class_name(self) -> &'static str {
        match self {
            EventKind::Creation => "__InstanceCreationEvent",
            EventKind::Modification => "__InstanceModificationEvent",
            EventKind::Deletion => "__InstanceDeletionEvent",
        }
    }

    /// Looks up an event class name, ignoring ASCII case.
    pub fn from_class_name(name: &str) -> Option<EventKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.class_name().eq_ignore_ascii_case(name))
    }
}

/// The list of selected properties.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `*`
    All,
    /// An explicit, non-empty list of properties.
    Paths(Vec<PropertyPath>),
}

/// An identifier together with its position in the query text.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The identifier as written.
    pub name: String,
    /// 0-based character offset of the identifier.
    pub pos: usize,
}

/// A property reference, optionally qualified by an event instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyPath {
    /// `Some` for `TargetInstance.X` / `PreviousInstance.X`, `None` for `X`.
    pub instance: Option<Instance>,
    /// The property name as written.
    pub name: String,
    /// 0-based character offset of the start of the path.
    pub pos: usize,
}

/// The instance a qualified property path refers to in an event query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// `TargetInstance`: the instance after the event.
    Target,
    /// `PreviousInstance`: the instance before a modification.
    Previous,
}

impl Instance {
    /// The WQL keyword for this instance.
    pub fn keyword(self) -> &'static str {
        match self {
            Instance::Target => "TargetInstance",
            Instance::Previous => "PreviousInstance",
        }
    }

    /// Looks up an instance keyword, ignoring ASCII case.
    pub fn from_keyword(word: &str) -> Option<Instance> {
        [Instance::Target, Instance::Previous]
            .into_iter()
            .find(|i| i.keyword().eq_ignore_ascii_case(word))
    }
}

/// A boolean condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a AND b`
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`
    Or(Box<Expr>, Box<Expr>),
    /// `NOT a`
    Not(Box<Expr>),
    /// `left <op> right`
    Compare {
        /// Left-hand side.
        left: Operand,
        /// Comparison operator.
        op: CmpOp,
        /// Right-hand side.
        right: Operand,
    },
    /// `operand [NOT] LIKE 'pattern'`
    Like {
        /// The value being matched.
        operand: Operand,
        /// The pattern (`%` = any run, `_` = one character).
        pattern: String,
        /// `true` for `NOT LIKE`.
        negated: bool,
    },
    /// `operand IS [NOT] NULL`
    IsNull {
        /// The value being tested.
        operand: Operand,
        /// `true` for `IS NOT NULL`.
        negated: bool,
    },
}

impl Expr {
    /// Calls `f` for every property path in the expression, left to right.
    pub fn walk_paths(&self, f: &mut impl FnMut(&PropertyPath)) {
        fn visit(op: &Operand, f: &mut impl FnMut(&PropertyPath)) {
            if let Operand::Path(p) = op {
                f(p);
            }
        }
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk_paths(f);
                b.walk_paths(f);
            }
            Expr::Not(e) => e.walk_paths(f),
            Expr::Compare { left, right, .. } => {
                visit(left, f);
                visit(right, f);
            }
            Expr::Like { operand, .. } | Expr::IsNull { operand, .. } => visit(operand, f),
        }
    }

    /// Calls `f` for every property path in the expression, left to right, to change it.
    pub fn walk_paths_mut(&mut self, f: &mut impl FnMut(&mut PropertyPath)) {
        fn visit(op: &mut Operand, f: &mut impl FnMut(&mut PropertyPath)) {
            if let Operand::Path(p) = op {
                f(p);
            }
        }
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk_paths_mut(f);
                b.walk_paths_mut(f);
            }
            Expr::Not(e) => e.walk_paths_mut(f),
            Expr::Compare { left, right, .. } => {
                visit(left, f);
                visit(right, f);
            }
            Expr::Like { operand, .. } | Expr::IsNull { operand, .. } => visit(operand, f),
        }
    }

    /// Binding strength used by `Display` to decide on parentheses.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            Expr::Not(_) => 3,
            _ => 4,
        }
    }
}

/// An operand of a comparison, `LIKE` or `IS NULL`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property reference.
    Path(PropertyPath),
    /// A constant.
    Literal(Literal),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator's WQL spelling (`<>` for [`CmpOp::Ne`]).
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A constant value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'` or `"text"`
    String(String),
    /// `42`, `-3`
    Integer(i64),
    /// `1.5`, `2e3` (always finite when produced by the parser)
    Real(f64),
    /// `TRUE` / `FALSE`
    Boolean(bool),
    /// `NULL`
    Null,
}

/// Writes `s` as a single-quoted WQL string literal.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\'' => f.write_str("\\'")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    f.write_str("'")
}

/// Writes a real so that it lexes back as a real (always has `.` or `e`).
fn write_real(f: &mut fmt::Formatter<'_>, r: f64) -> fmt::Result {
    write!(f, "{r:?}")
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_quoted(f, s),
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Real(r) => write_real(f, *r),
            Literal::Boolean(true) => f.write_str("TRUE"),
            Literal::Boolean(false) => f.write_str("FALSE"),
            Literal::Null => f.write_str("NULL"),
        }
    }
}

impl fmt::Display for PropertyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(inst) = self.instance {
            write!(f, "{}.", inst.keyword())?;
        }
        f.write_str(&self.name)
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Path(p) => p.fmt(f),
            Operand::Literal(l) => l.fmt(f),
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Expr {
    /// Writes the expression with the minimum parentheses needed to parse
    /// back to the same tree (`AND`/`OR` are left-associative).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        let prec = self.precedence();
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                let word = if matches!(self, Expr::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                child(f, a, a.precedence() < prec)?;
                f.write_str(word)?;
                child(f, b, b.precedence() <= prec)
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                child(f, e, e.precedence() < prec)
            }
            Expr::Compare { left, op, right } => write!(f, "{left} {op} {right}"),
            Expr::Like {
                operand,
                pattern,
                negated,
            } => {
                write!(f, "{operand} {}LIKE ", if *negated { "NOT " } else { "" })?;
                write_quoted(f, pattern)
            }
            Expr::IsNull { operand, negated } => {
                write!(f, "{operand} IS {}NULL", if *negated { "NOT " } else { "" })
            }
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Projection::All => f.write_str("*"),
            Projection::Paths(paths) => {
                for (i, p) in paths.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(q) => {
                write!(f, "SELECT {} FROM {}", q.projection, q.class.name)?;
                if let Some(e) = &q.filter {
                    write!(f, " WHERE {e}")?;
                }
                Ok(())
            }
            Statement::Event(q) => {
                write!(f, "SELECT {} FROM {}", q.projection, q.kind.class_name())?;
                if let Some(secs) = q.within_secs {
                    f.write_str(" WITHIN ")?;
                    write_real(f, secs)?;
                }
                f.write_str(" WHERE TargetInstance ISA ")?;
                write_quoted(f, &q.target_class.name)?;
                if let Some(e) = &q.filter {
                    write!(f, " AND {e}")?;
                }
                Ok(())
            }
        }
    }
}
