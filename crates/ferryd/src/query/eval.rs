//! Three-valued evaluation of WQL conditions against a row of values.

use std::cmp::Ordering;

use super::ast::{CmpOp, Expr, Literal, Operand, PropertyPath};
use super::like::like;

/// A property value (or literal) during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing or null.
    Null,
    /// Text; compared case-insensitively.
    String(String),
    /// A 64-bit integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// A boolean.
    Boolean(bool),
}

impl From<&Literal> for Value {
    fn from(lit: &Literal) -> Self {
        match lit {
            Literal::String(s) => Value::String(s.clone()),
            Literal::Integer(i) => Value::Integer(*i),
            Literal::Real(r) => Value::Real(*r),
            Literal::Boolean(b) => Value::Boolean(*b),
            Literal::Null => Value::Null,
        }
    }
}

/// Supplies property values to the evaluator.
pub trait Row {
    /// Returns the value of `path`, or [`Value::Null`] if it has none.
    fn get(&self, path: &PropertyPath) -> Value;
}

/// Any `Fn(&PropertyPath) -> Value` closure is a row.
impl<F: Fn(&PropertyPath) -> Value> Row for F {
    fn get(&self, path: &PropertyPath) -> Value {
        self(path)
    }
}

/// Evaluates `expr` with SQL three-valued logic: `None` means unknown
/// (some comparison involved NULL or mismatched types).
pub fn eval(expr: &Expr, row: &dyn Row) -> Option<bool> {
    match expr {
        Expr::And(a, b) => match eval(a, row) {
            Some(false) => Some(false),
            l => match (l, eval(b, row)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
        },
        Expr::Or(a, b) => match eval(a, row) {
            Some(true) => Some(true),
            l => match (l, eval(b, row)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        },
        Expr::Not(e) => eval(e, row).map(|b| !b),
        Expr::Compare { left, op, right } => {
            let ord = compare(&value(left, row), &value(right, row))?;
            Some(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            })
        }
        Expr::Like {
            operand,
            pattern,
            negated,
        } => {
            let text = match value(operand, row) {
                Value::Null => return None,
                Value::String(s) => s,
                Value::Integer(i) => i.to_string(),
                Value::Real(r) => r.to_string(),
                Value::Boolean(b) => b.to_string(),
            };
            Some(like(pattern, &text) != *negated)
        }
        Expr::IsNull { operand, negated } => Some((value(operand, row) == Value::Null) != *negated),
    }
}

/// Returns true iff there is no filter or it evaluates to `Some(true)`.
pub fn matches(expr: Option<&Expr>, row: &dyn Row) -> bool {
    expr.is_none_or(|e| eval(e, row) == Some(true))
}

fn value(operand: &Operand, row: &dyn Row) -> Value {
    match operand {
        Operand::Path(p) => row.get(p),
        Operand::Literal(l) => l.into(),
    }
}

/// Orders two values, or `None` if either is NULL or the types don't compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Integer(x), Value::Integer(y)) => Some(x.cmp(y)),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y),
        (Value::Integer(x), Value::Real(y)) => int_real_cmp(*x, *y),
        (Value::Real(x), Value::Integer(y)) => int_real_cmp(*y, *x).map(Ordering::reverse),
        (Value::Boolean(x), Value::Boolean(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Exact comparison of an integer with a real (no rounding of large integers).
fn int_real_cmp(i: i64, r: f64) -> Option<Ordering> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if r.is_nan() {
        return None;
    }
    if r >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if r < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = r.trunc();
    // In range, so the conversion is exact.
    Some(i.cmp(&(whole as i64)).then_with(|| {
        if r > whole {
            Ordering::Less
        } else if r < whole {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::ast::{Instance, Statement};
    use super::super::parse;
    use super::*;

    fn row(path: &PropertyPath) -> Value {
        match path.name.to_ascii_lowercase().as_str() {
            "name" => Value::String("Backup".into()),
            "size" => Value::Integer(42),
            "ratio" => Value::Real(1.5),
            "enabled" => Value::Boolean(true),
            _ => Value::Null,
        }
    }

    fn ev(filter: &str) -> Option<bool> {
        match parse(&format!("SELECT * FROM Job WHERE {filter}")).unwrap() {
            Statement::Select(q) => eval(q.filter.as_ref().unwrap(), &row),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comparisons() {
        assert_eq!(ev("Name = 'backup'"), Some(true));
        assert_eq!(ev("Name <> 'BACKUP'"), Some(false));
        assert_eq!(ev("Name < 'c'"), Some(true));
        assert_eq!(ev("Name > 'a'"), Some(true));
        assert_eq!(ev("Name >= 'BACKUP'"), Some(true));
        assert_eq!(ev("Name <= 'BACKUO'"), Some(false));
        assert_eq!(ev("Size = 42"), Some(true));
        assert_eq!(ev("Size != 42"), Some(false));
        assert_eq!(ev("Size < 42.5"), Some(true));
        assert_eq!(ev("Size > 41.99"), Some(true));
        assert_eq!(ev("Size = 42.0"), Some(true));
        assert_eq!(ev("42.0 <= Size"), Some(true));
        assert_eq!(ev("Ratio >= 1"), Some(true));
        assert_eq!(ev("Ratio < 2"), Some(true));
        assert_eq!(ev("Enabled = TRUE"), Some(true));
        assert_eq!(ev("Enabled > FALSE"), Some(true));
        assert_eq!(ev("1 = 1"), Some(true));
        assert_eq!(ev("'a' = 'A'"), Some(true));
        assert_eq!(ev("2e3 = 2000"), Some(true));
    }

    #[test]
    fn large_integer_vs_real_is_exact() {
        assert_eq!(
            int_real_cmp(i64::MAX, i64::MAX as f64),
            Some(Ordering::Less)
        );
        assert_eq!(
            int_real_cmp(i64::MIN, i64::MIN as f64),
            Some(Ordering::Equal)
        );
        assert_eq!(
            int_real_cmp(9_007_199_254_740_993, 9_007_199_254_740_992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(int_real_cmp(-1, -0.5), Some(Ordering::Less));
        assert_eq!(int_real_cmp(0, -0.5), Some(Ordering::Greater));
        assert_eq!(int_real_cmp(0, f64::NAN), None);
        assert_eq!(int_real_cmp(0, f64::NEG_INFINITY), Some(Ordering::Greater));
    }

    #[test]
    fn mismatched_types_are_unknown() {
        assert_eq!(ev("Name = 42"), None);
        assert_eq!(ev("Size = '42'"), None);
        assert_eq!(ev("Enabled = 1"), None);
        assert_eq!(ev("Enabled = 'true'"), None);
        assert_eq!(ev("NOT Size = 'x'"), None);
    }

    #[test]
    fn null_semantics() {
        assert_eq!(ev("Missing = 1"), None);
        assert_eq!(ev("Missing <> 1"), None);
        assert_eq!(ev("NULL = NULL"), None);
        assert_eq!(ev("Missing = NULL"), None);
        assert_eq!(ev("NOT Missing = 1"), None);
        assert_eq!(ev("Missing IS NULL"), Some(true));
        assert_eq!(ev("Missing IS NOT NULL"), Some(false));
        assert_eq!(ev("Name IS NULL"), Some(false));
        assert_eq!(ev("Name IS NOT NULL"), Some(true));
        assert_eq!(ev("NULL IS NULL"), Some(true));
        assert_eq!(ev("NOT Missing IS NULL"), Some(false));
    }

    #[test]
    fn three_valued_and_or() {
        // AND truth table with unknown (U = Missing = 1).
        assert_eq!(ev("1 = 0 AND Missing = 1"), Some(false));
        assert_eq!(ev("Missing = 1 AND 1 = 0"), Some(false));
        assert_eq!(ev("1 = 1 AND Missing = 1"), None);
        assert_eq!(ev("Missing = 1 AND 1 = 1"), None);
        assert_eq!(ev("Missing = 1 AND Missing = 2"), None);
        assert_eq!(ev("1 = 1 AND 2 = 2"), Some(true));
        // OR truth table with unknown.
        assert_eq!(ev("1 = 1 OR Missing = 1"), Some(true));
        assert_eq!(ev("Missing = 1 OR 1 = 1"), Some(true));
        assert_eq!(ev("1 = 0 OR Missing = 1"), None);
        assert_eq!(ev("Missing = 1 OR 1 = 0"), None);
        assert_eq!(ev("Missing = 1 OR Missing = 2"), None);
        assert_eq!(ev("1 = 0 OR 2 = 0"), Some(false));
        // NOT.
        assert_eq!(ev("NOT 1 = 1"), Some(false));
        assert_eq!(ev("NOT 1 = 0"), Some(true));
        assert_eq!(ev("NOT (Missing = 1 OR 1 = 0)"), None);
    }

    #[test]
    fn like_operator() {
        assert_eq!(ev("Name LIKE 'b%'"), Some(true));
        assert_eq!(ev("Name LIKE 'BACK_P'"), Some(true));
        assert_eq!(ev("Name NOT LIKE 'b%'"), Some(false));
        assert_eq!(ev("Name LIKE 'x%'"), Some(false));
        assert_eq!(ev("Name NOT LIKE 'x%'"), Some(true));
        assert_eq!(ev("Size LIKE '4%'"), Some(true));
        assert_eq!(ev("Size LIKE '_2'"), Some(true));
        assert_eq!(ev("Ratio LIKE '1.5'"), Some(true));
        assert_eq!(ev("Enabled LIKE 'TRUE'"), Some(true));
        assert_eq!(ev("Missing LIKE '%'"), None);
        assert_eq!(ev("Missing NOT LIKE '%'"), None);
        assert_eq!(ev("NULL LIKE '%'"), None);
        assert_eq!(ev("'abc' LIKE 'A%'"), Some(true));
    }

    #[test]
    fn matches_requires_true() {
        let e = |f: &str| match parse(&format!("SELECT * FROM Job WHERE {f}")).unwrap() {
            Statement::Select(q) => q.filter.unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(matches(None, &row));
        assert!(matches(Some(&e("Size = 42")), &row));
        assert!(!matches(Some(&e("Size = 43")), &row));
        assert!(!matches(Some(&e("Missing = 1")), &row));
        assert!(!matches(Some(&e("NOT Missing = 1")), &row));
    }

    #[test]
    fn qualified_paths_reach_the_row() {
        let stmt = parse(
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job' \
             AND TargetInstance.State <> PreviousInstance.State",
        )
        .unwrap();
        let Statement::Event(q) = stmt else { panic!() };
        let row = |p: &PropertyPath| match p.instance {
            Some(Instance::Target) => Value::String("done".into()),
            Some(Instance::Previous) => Value::String("running".into()),
            None => Value::Null,
        };
        assert!(matches(q.filter.as_ref(), &row));
    }
}
