//! Parser tests: every production, every error kind, and property tests.

use super::ast::*;
use super::parse;
use super::parser::{is_reserved, ParseError, MAX_NESTING, MAX_OPERATORS};

// ---------- helpers ----------

/// Zeroes every source position so trees can be compared structurally.
fn strip(stmt: Statement) -> Statement {
    fn path(p: &mut PropertyPath) {
        p.pos = 0;
    }
    fn operand(o: &mut Operand) {
        if let Operand::Path(p) = o {
            path(p);
        }
    }
    fn expr(e: &mut Expr) {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                expr(a);
                expr(b);
            }
            Expr::Not(a) => expr(a),
            Expr::Compare { left, right, .. } => {
                operand(left);
                operand(right);
            }
            Expr::Like { operand: o, .. } | Expr::IsNull { operand: o, .. } => operand(o),
        }
    }
    fn projection(p: &mut Projection) {
        if let Projection::Paths(ps) = p {
            ps.iter_mut().for_each(path);
        }
    }
    let mut stmt = stmt;
    match &mut stmt {
        Statement::Select(q) => {
            q.class.pos = 0;
            projection(&mut q.projection);
            q.filter.iter_mut().for_each(expr);
        }
        Statement::Event(q) => {
            q.target_class.pos = 0;
            projection(&mut q.projection);
            q.filter.iter_mut().for_each(expr);
        }
    }
    stmt
}

fn ok(q: &str) -> Statement {
    parse(q).unwrap_or_else(|e| panic!("{q:?} failed: {e}"))
}

fn select(q: &str) -> SelectQuery {
    match strip(ok(q)) {
        Statement::Select(s) => s,
        other => panic!("not a select: {other:?}"),
    }
}

fn event(q: &str) -> EventQuery {
    match strip(ok(q)) {
        Statement::Event(e) => e,
        other => panic!("not an event query: {other:?}"),
    }
}

/// The (position-stripped) filter of `SELECT * FROM Job WHERE <f>`.
fn filter(f: &str) -> Expr {
    select(&format!("SELECT * FROM Job WHERE {f}"))
        .filter
        .unwrap()
}

fn err(q: &str) -> ParseError {
    match parse(q) {
        Ok(s) => panic!("{q:?} unexpectedly parsed: {s:?}"),
        Err(e) => e,
    }
}

/// Asserts an error at the char offset of the last `at` in `q` (or at the end if `at` is "").
fn assert_err(q: &str, at: &str, expected: &str, found: &str) {
    let e = err(q);
    let byte = if at.is_empty() {
        q.len()
    } else {
        q.rfind(at).unwrap()
    };
    let position = q[..byte].chars().count();
    assert_eq!(
        (e.position, e.expected.as_str(), e.found.as_str()),
        (position, expected, found),
        "for {q:?}"
    );
}

fn p(name: &str) -> PropertyPath {
    PropertyPath {
        instance: None,
        name: name.into(),
        pos: 0,
    }
}

fn tp(name: &str) -> PropertyPath {
    PropertyPath {
        instance: Some(Instance::Target),
        name: name.into(),
        pos: 0,
    }
}

fn pp(name: &str) -> PropertyPath {
    PropertyPath {
        instance: Some(Instance::Previous),
        name: name.into(),
        pos: 0,
    }
}

fn path(name: &str) -> Operand {
    Operand::Path(p(name))
}

fn int(i: i64) -> Operand {
    Operand::Literal(Literal::Integer(i))
}

fn s(text: &str) -> Operand {
    Operand::Literal(Literal::String(text.into()))
}

fn cmp(left: Operand, op: CmpOp, right: Operand) -> Expr {
    Expr::Compare { left, op, right }
}

/// `<name> = 1`
fn eq1(name: &str) -> Expr {
    cmp(path(name), CmpOp::Eq, int(1))
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

fn not(a: Expr) -> Expr {
    Expr::Not(Box::new(a))
}

fn lit(l: &str) -> Literal {
    match filter(&format!("x = {l}")) {
        Expr::Compare {
            right: Operand::Literal(l),
            ..
        } => l,
        other => panic!("{other:?}"),
    }
}

const QUALIFIED: &str = "qualified property (TargetInstance.<name> or PreviousInstance.<name>)";
const UNQUALIFIED: &str =
    "unqualified property name (TargetInstance/PreviousInstance are only valid in event queries)";
const ISA_FIRST: &str = "TargetInstance ISA '<class>' as the first condition of an event query";
const CREATE: &str = "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'";

// ---------- plain select ----------

#[test]
fn select_star() {
    let q = ok("SELECT * FROM Job");
    assert_eq!(
        q,
        Statement::Select(SelectQuery {
            projection: Projection::All,
            class: Ident {
                name: "Job".into(),
                pos: 14
            },
            filter: None
        })
    );
}

#[test]
fn select_paths_with_positions() {
    let Statement::Select(q) = ok("SELECT Name,Size , State FROM file") else {
        panic!()
    };
    let Projection::Paths(paths) = q.projection else {
        panic!()
    };
    let got: Vec<(&str, usize)> = paths.iter().map(|p| (p.name.as_str(), p.pos)).collect();
    assert_eq!(got, [("Name", 7), ("Size", 12), ("State", 19)]);
    assert!(paths.iter().all(|p| p.instance.is_none()));
    assert_eq!(q.class.name, "file", "class kept as written");
    assert_eq!(q.class.pos, 30);
}

#[test]
fn select_where() {
    let q = select("SELECT Name FROM Handler WHERE Name = 'x'");
    assert_eq!(q.projection, Projection::Paths(vec![p("Name")]));
    assert_eq!(q.filter, Some(cmp(path("Name"), CmpOp::Eq, s("x"))));
}

#[test]
fn filter_positions() {
    let Statement::Select(q) = ok("SELECT * FROM Job WHERE 1 < Size") else {
        panic!()
    };
    let mut seen = vec![];
    q.filter
        .unwrap()
        .walk_paths(&mut |p| seen.push((p.name.clone(), p.pos)));
    assert_eq!(seen, [("Size".to_string(), 28)]);
}

#[test]
fn keywords_are_case_insensitive() {
    let a = select(
        "select name from job where not size >= 3 and name like 'x' or name is not null or a not like 'y'",
    );
    let b = select(
        "SeLeCt name FrOm job WhErE NoT size >= 3 AnD name LiKe 'x' oR name Is NoT nUlL Or a NOT LIKE 'y'",
    );
    assert_eq!(a, b);
    assert_eq!(lit("true"), Literal::Boolean(true));
    assert_eq!(lit("False"), Literal::Boolean(false));
    assert_eq!(lit("nULL"), Literal::Null);
}

// ---------- operators and precedence ----------

#[test]
fn every_comparison_operator() {
    for (text, op) in [
        ("=", CmpOp::Eq),
        ("<>", CmpOp::Ne),
        ("!=", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        assert_eq!(filter(&format!("a {text} 1")), cmp(path("a"), op, int(1)));
        assert_eq!(filter(&format!("a{text}1")), cmp(path("a"), op, int(1)));
    }
    assert_eq!(filter("a<-1"), cmp(path("a"), CmpOp::Lt, int(-1)));
    assert_eq!(filter("1 = a"), cmp(int(1), CmpOp::Eq, path("a")));
    assert_eq!(filter("a = b"), cmp(path("a"), CmpOp::Eq, path("b")));
    assert_eq!(filter("'x' = 'y'"), cmp(s("x"), CmpOp::Eq, s("y")));
}

#[test]
fn like_and_is_null() {
    let like = |negated| Expr::Like {
        operand: path("Name"),
        pattern: "a%_".into(),
        negated,
    };
    assert_eq!(filter("Name LIKE 'a%_'"), like(false));
    assert_eq!(filter("Name NOT LIKE \"a%_\""), like(true));
    assert_eq!(
        filter("Name IS NULL"),
        Expr::IsNull {
            operand: path("Name"),
            negated: false
        }
    );
    assert_eq!(
        filter("Name IS NOT NULL"),
        Expr::IsNull {
            operand: path("Name"),
            negated: true
        }
    );
    assert_eq!(
        filter("42 LIKE '4%'"),
        Expr::Like {
            operand: int(42),
            pattern: "4%".into(),
            negated: false
        }
    );
}

#[test]
fn precedence_not_and_or() {
    assert_eq!(
        filter("a = 1 OR b = 1 AND NOT c = 1"),
        or(eq1("a"), and(eq1("b"), not(eq1("c"))))
    );
    assert_eq!(filter("NOT a = 1 AND b = 1"), and(not(eq1("a")), eq1("b")));
    assert_eq!(
        filter("a = 1 AND b = 1 OR c = 1"),
        or(and(eq1("a"), eq1("b")), eq1("c"))
    );
    assert_eq!(filter("NOT NOT a = 1"), not(not(eq1("a"))));
}

#[test]
fn left_associative_chains() {
    assert_eq!(
        filter("a = 1 AND b = 1 AND c = 1"),
        and(and(eq1("a"), eq1("b")), eq1("c"))
    );
    assert_eq!(
        filter("a = 1 OR b = 1 OR c = 1"),
        or(or(eq1("a"), eq1("b")), eq1("c"))
    );
}

#[test]
fn parentheses() {
    assert_eq!(
        filter("(a = 1 OR b = 1) AND c = 1"),
        and(or(eq1("a"), eq1("b")), eq1("c"))
    );
    assert_eq!(
        filter("a = 1 OR (b = 1 OR c = 1)"),
        or(eq1("a"), or(eq1("b"), eq1("c")))
    );
    assert_eq!(
        filter("NOT (a = 1 AND b = 1)"),
        not(and(eq1("a"), eq1("b")))
    );
    assert_eq!(filter("((((a = 1))))"), eq1("a"));
}

// ---------- literals ----------

#[test]
fn literal_kinds() {
    assert_eq!(lit("'abc'"), Literal::String("abc".into()));
    assert_eq!(lit("\"abc\""), Literal::String("abc".into()));
    assert_eq!(lit("''"), Literal::String(String::new()));
    assert_eq!(lit("42"), Literal::Integer(42));
    assert_eq!(lit("-3"), Literal::Integer(-3));
    assert_eq!(lit("0"), Literal::Integer(0));
    assert_eq!(lit("9223372036854775807"), Literal::Integer(i64::MAX));
    assert_eq!(lit("-9223372036854775808"), Literal::Integer(i64::MIN));
    assert_eq!(lit("1.5"), Literal::Real(1.5));
    assert_eq!(lit("-3.25"), Literal::Real(-3.25));
    assert_eq!(lit("2e3"), Literal::Real(2000.0));
    assert_eq!(lit("2E-3"), Literal::Real(0.002));
    assert_eq!(lit("1.5e+2"), Literal::Real(150.0));
    assert_eq!(lit("TRUE"), Literal::Boolean(true));
    assert_eq!(lit("FALSE"), Literal::Boolean(false));
    assert_eq!(lit("NULL"), Literal::Null);
}

#[test]
fn string_escapes_and_doubled_quotes() {
    assert_eq!(
        lit(r#"'a\\b\'c\"d\ne\tf'"#),
        Literal::String("a\\b'c\"d\ne\tf".into())
    );
    assert_eq!(
        lit(r#""a\\b\'c\"d\ne\tf""#),
        Literal::String("a\\b'c\"d\ne\tf".into())
    );
    assert_eq!(lit("'it''s'"), Literal::String("it's".into()));
    assert_eq!(lit("''''"), Literal::String("'".into()));
    assert_eq!(lit("\"it''s\""), Literal::String("it''s".into()));
    assert_eq!(lit("'say \"hi\"'"), Literal::String("say \"hi\"".into()));
    assert_eq!(lit("'ünï cødé ✓'"), Literal::String("ünï cødé ✓".into()));
}

// ---------- event queries ----------

#[test]
fn each_event_kind() {
    for (name, kind) in [
        ("__InstanceCreationEvent", EventKind::Creation),
        ("__InstanceModificationEvent", EventKind::Modification),
        ("__InstanceDeletionEvent", EventKind::Deletion),
        ("__instancecreationevent", EventKind::Creation),
        ("__INSTANCEMODIFICATIONEVENT", EventKind::Modification),
        ("__InStAnCeDeLeTiOnEvEnT", EventKind::Deletion),
    ] {
        let q = event(&format!(
            "SELECT * FROM {name} WHERE TargetInstance ISA 'Job'"
        ));
        assert_eq!(
            q,
            EventQuery {
                projection: Projection::All,
                kind,
                within_secs: None,
                target_class: Ident {
                    name: "Job".into(),
                    pos: 0
                },
                filter: None
            }
        );
    }
}

#[test]
fn event_within_and_filter() {
    let q = event(
        "select TargetInstance.Name, PreviousInstance.State from __InstanceModificationEvent \
         within 2.5 where targetinstance isa \"File\" and TargetInstance.State <> PreviousInstance.State",
    );
    assert_eq!(q.kind, EventKind::Modification);
    assert_eq!(q.within_secs, Some(2.5));
    assert_eq!(q.target_class.name, "File");
    assert_eq!(
        q.projection,
        Projection::Paths(vec![tp("Name"), pp("State")])
    );
    assert_eq!(
        q.filter,
        Some(cmp(
            Operand::Path(tp("State")),
            CmpOp::Ne,
            Operand::Path(pp("State"))
        ))
    );
    assert_eq!(
        event("SELECT * FROM __InstanceDeletionEvent WITHIN 5 WHERE TargetInstance ISA 'Job'")
            .within_secs,
        Some(5.0)
    );
    assert_eq!(
        event("SELECT * FROM __InstanceDeletionEvent WITHIN 0 WHERE TargetInstance ISA 'Job'")
            .within_secs,
        Some(0.0)
    );
}

#[test]
fn event_filter_is_whole_rest_after_and() {
    let q = event(&format!(
        "{CREATE} AND TargetInstance.A = 1 OR TargetInstance.B = 1"
    ));
    let t1 = |n: &str| cmp(Operand::Path(tp(n)), CmpOp::Eq, int(1));
    assert_eq!(q.filter, Some(or(t1("A"), t1("B"))));
}

#[test]
fn qualified_path_positions() {
    let Statement::Event(q) = ok(&format!("{CREATE} AND TargetInstance . Size > 1")) else {
        panic!()
    };
    let mut seen = vec![];
    q.filter
        .unwrap()
        .walk_paths(&mut |p| seen.push((p.instance, p.name.clone(), p.pos)));
    assert_eq!(seen, [(Some(Instance::Target), "Size".to_string(), 73)]);
}

// ---------- walk_paths and Display ----------

#[test]
fn walk_paths_visits_all_in_order() {
    let e = filter("(a = b OR NOT c LIKE 'x') AND d IS NULL AND 1 = e AND 2 = 3");
    let mut names = vec![];
    e.walk_paths(&mut |p| names.push(p.name.clone()));
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
}

#[test]
fn display_expressions() {
    let show = |f: &str| filter(f).to_string();
    assert_eq!(
        show("a=1 or b=1 and not c=1"),
        "a = 1 OR b = 1 AND NOT c = 1"
    );
    assert_eq!(show("(a=1 or b=1) and c=1"), "(a = 1 OR b = 1) AND c = 1");
    assert_eq!(show("a=1 or (b=1 or c=1)"), "a = 1 OR (b = 1 OR c = 1)");
    assert_eq!(show("(a=1 or b=1) or c=1"), "a = 1 OR b = 1 OR c = 1");
    assert_eq!(show("not (a=1 and b=1)"), "NOT (a = 1 AND b = 1)");
    assert_eq!(show("a != 1"), "a <> 1");
    assert_eq!(show("a not like 'it''s\\\\'"), r"a NOT LIKE 'it\'s\\'");
    assert_eq!(show("a is not null"), "a IS NOT NULL");
    assert_eq!(show("a = \"x\ny\""), r"a = 'x\ny'");
    assert_eq!(show("a = 2e3 and b = true"), "a = 2000.0 AND b = TRUE");
    assert_eq!(show("a = -3 and b = null"), "a = -3 AND b = NULL");
}

#[test]
fn display_statements() {
    let show = |q: &str| ok(q).to_string();
    assert_eq!(
        show("select name , size from job where size>1"),
        "SELECT name, size FROM job WHERE size > 1"
    );
    assert_eq!(show("select * from job"), "SELECT * FROM job");
    assert_eq!(
        show("select TargetInstance.name from __instancecreationevent within 5 where targetinstance isa 'J''ob' and TargetInstance.a=1"),
        "SELECT TargetInstance.name FROM __InstanceCreationEvent WITHIN 5.0 WHERE TargetInstance ISA 'J\\'ob' AND TargetInstance.a = 1"
    );
}

#[test]
fn error_display() {
    let e = err("SELECT Name, Size WHERE x = 1");
    assert_eq!(
        e.to_string(),
        "at position 18: expected FROM, found 'WHERE'"
    );
    assert_eq!(
        err("SELECT *").to_string(),
        "at position 8: expected FROM, found end of query"
    );
}

// ---------- every error kind ----------

#[test]
fn error_unexpected_character() {
    let q = "SELECT * FROM Job WHERE Size # 1";
    assert_err(
        q,
        "#",
        "comparison operator, LIKE or IS",
        "unexpected character '#'",
    );
    assert_err(
        "SELECT * FROM Job;",
        ";",
        "WHERE or end of query",
        "unexpected character ';'",
    );
    assert_err(
        "SELECT * FROM Jöb",
        "ö",
        "WHERE or end of query",
        "unexpected character 'ö'",
    );
    // Positions are character offsets, not byte offsets.
    let q = "SELECT * FROM Job WHERE Name = 'ñé' AND @";
    assert_eq!(err(q).position, 40);
    assert_err(
        q,
        "@",
        "operand (property name or literal)",
        "unexpected character '@'",
    );
    assert_err(
        "SELECT * FROM Job WHERE a ! 1",
        "!",
        "comparison operator, LIKE or IS",
        "unexpected character '!'",
    );
}

#[test]
fn error_unterminated_string() {
    assert_err(
        "SELECT * FROM Job WHERE Name = 'abc",
        "",
        "closing ' of string starting at position 31",
        "end of query",
    );
    assert_err(
        "SELECT * FROM Job WHERE Name = \"abc\\\"",
        "",
        "closing \" of string starting at position 31",
        "end of query",
    );
    assert_err(
        "SELECT * FROM Job WHERE Name = 'abc\\",
        "",
        "closing ' of string starting at position 31",
        "end of query",
    );
}

#[test]
fn error_bad_escape() {
    assert_err(
        r"SELECT * FROM Job WHERE Name = 'a\qb'",
        r"\q",
        r#"escape sequence (\\, \', \", \n or \t)"#,
        r"'\q'",
    );
}

#[test]
fn error_bad_number() {
    let base = "SELECT * FROM Job WHERE Size = ";
    for (num, found) in [
        ("12abc", "'12abc'"),
        ("2e", "'2e'"),
        ("2e+", "'2e+'"),
        ("1.2.3", "'1.2.3'"),
        ("1e5x", "'1e5x'"),
    ] {
        assert_err(&format!("{base}{num} AND x = 1"), num, "number", found);
    }
    assert_err(
        &format!("{base}9223372036854775808"),
        "9223",
        "integer within 64-bit range",
        "'9223372036854775808'",
    );
    assert_err(
        &format!("{base}-9223372036854775809"),
        "-9223",
        "integer within 64-bit range",
        "'-9223372036854775809'",
    );
    assert_err(&format!("{base}1e999"), "1e999", "finite number", "'1e999'");
    let long = "9".repeat(100);
    let e = err(&format!("{base}{long}"));
    assert_eq!(
        e.found,
        format!("'{}...'", "9".repeat(40)),
        "found is truncated"
    );
}

#[test]
fn error_expected_keyword() {
    assert_err("", "", "SELECT", "end of query");
    assert_err("INSERT * FROM Job", "INSERT", "SELECT", "'INSERT'");
    assert_err("SELECT * Job", "Job", "FROM", "'Job'");
    assert_err("SELECT * FROM Job WHERE a IS 5", "5", "NULL", "'5'");
    assert_err(
        "SELECT * FROM Job WHERE a IS NOT",
        "",
        "NULL",
        "end of query",
    );
    assert_err("SELECT * FROM Job WHERE a NOT = 5", "=", "LIKE", "'='");
}

#[test]
fn error_expected_name_class_operand_operator() {
    assert_err("SELECT * FROM", "", "class name", "end of query");
    assert_err("SELECT * FROM WHERE", "WHERE", "class name", "'WHERE'");
    assert_err("SELECT * FROM 'Job'", "'Job'", "class name", "string 'Job'");
    assert_err("SELECT FROM Job", "FROM", "'*' or property name", "'FROM'");
    assert_err("SELECT a, FROM Job", "FROM", "property name", "'FROM'");
    assert_err("SELECT a, * FROM Job", "*", "property name", "'*'");
    assert_err(
        "SELECT * FROM Job WHERE = 1",
        "=",
        "operand (property name or literal)",
        "'='",
    );
    assert_err(
        "SELECT * FROM Job WHERE AND",
        "AND",
        "operand (property name or literal)",
        "'AND'",
    );
    assert_err(
        "SELECT * FROM Job WHERE",
        "",
        "operand (property name or literal)",
        "end of query",
    );
    assert_err(
        "SELECT * FROM Job WHERE a =",
        "",
        "operand (property name or literal)",
        "end of query",
    );
    assert_err(
        "SELECT * FROM Job WHERE a 'x'",
        "'x'",
        "comparison operator, LIKE or IS",
        "string 'x'",
    );
    assert_err(
        "SELECT * FROM Job WHERE a",
        "",
        "comparison operator, LIKE or IS",
        "end of query",
    );
}

#[test]
fn error_expected_string_after_like() {
    assert_err(
        "SELECT * FROM Job WHERE a LIKE 5",
        "5",
        "string pattern after LIKE",
        "'5'",
    );
    assert_err(
        "SELECT * FROM Job WHERE a NOT LIKE b",
        "b",
        "string pattern after LIKE",
        "'b'",
    );
}

#[test]
fn error_missing_close_paren() {
    assert_err("SELECT * FROM Job WHERE (a = 1", "", "')'", "end of query");
    assert_err("SELECT * FROM Job WHERE (a = 1 b = 2", "b =", "')'", "'b'");
}

#[test]
fn error_trailing_input() {
    assert_err(
        "SELECT * FROM Job WHERE a = 1 b",
        "b",
        "end of query",
        "'b'",
    );
    assert_err("SELECT * FROM Job WHERE a = 1)", ")", "end of query", "')'");
    assert_err(
        "SELECT * FROM Job extra",
        "extra",
        "WHERE or end of query",
        "'extra'",
    );
    assert_err(
        &format!("{CREATE} OR x"),
        "OR",
        "AND or end of query",
        "'OR'",
    );
    assert_err(
        &format!("{CREATE} AND TargetInstance.a = 1 ;"),
        ";",
        "end of query",
        "unexpected character ';'",
    );
}

#[test]
fn error_isa_rules() {
    // Missing WHERE / ISA entirely.
    assert_err(
        "SELECT * FROM __InstanceCreationEvent",
        "",
        "WITHIN or WHERE",
        "end of query",
    );
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WITHIN 5",
        "",
        "WHERE",
        "end of query",
    );
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance.Name = 'x'",
        ".",
        &format!("ISA ({ISA_FIRST})"),
        "'.'",
    );
    // ISA not first.
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WHERE PreviousInstance.A = 1 AND TargetInstance ISA 'Job'",
        "PreviousInstance",
        ISA_FIRST,
        "'PreviousInstance'",
    );
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WHERE (TargetInstance ISA 'Job')",
        "(",
        ISA_FIRST,
        "'('",
    );
    // ISA needs a string.
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA Job",
        "Job",
        "class name string after ISA",
        "'Job'",
    );
    // ISA anywhere else.
    assert_err(
        &format!("{CREATE} AND TargetInstance ISA 'File'"),
        "ISA 'File'",
        "'.' after TargetInstance (ISA is only valid as the first condition)",
        "'ISA'",
    );
    assert_err(
        &format!("{CREATE} AND PreviousInstance = 1"),
        "= 1",
        "'.' after PreviousInstance",
        "'='",
    );
    assert_err(
        "SELECT * FROM Job WHERE TargetInstance ISA 'Job'",
        "ISA",
        "comparison operator, LIKE or IS (ISA is only valid in event queries)",
        "'ISA'",
    );
}

#[test]
fn error_qualification() {
    assert_err(
        "SELECT TargetInstance.Name FROM Job",
        "TargetInstance",
        UNQUALIFIED,
        "'TargetInstance.Name'",
    );
    assert_err(
        "SELECT * FROM Job WHERE PreviousInstance.Size > 1",
        "PreviousInstance",
        UNQUALIFIED,
        "'PreviousInstance.Size'",
    );
    assert_err(
        "SELECT Name FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'",
        "Name",
        QUALIFIED,
        "'Name'",
    );
    assert_err(
        "SELECT TargetInstance.A, B FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'",
        "B ",
        QUALIFIED,
        "'B'",
    );
    assert_err(
        &format!("{CREATE} AND Name = 'x'"),
        "Name",
        QUALIFIED,
        "'Name'",
    );
    assert_err(
        "SELECT * FROM Job WHERE Foo.Bar = 1",
        "Foo",
        "TargetInstance or PreviousInstance before '.'",
        "'Foo'",
    );
    assert_err(
        &format!("{CREATE} AND TargetInstance. = 1"),
        "= 1",
        "property name after '.'",
        "'='",
    );
    assert_err(
        &format!("{CREATE} AND TargetInstance.and = 1"),
        "and =",
        "property name after '.'",
        "'and'",
    );
}

#[test]
fn error_within_not_a_number() {
    let q = |w: &str| {
        format!("SELECT * FROM __InstanceCreationEvent WITHIN {w} WHERE TargetInstance ISA 'Job'")
    };
    assert_err(&q("x"), "x", "number of seconds after WITHIN", "'x'");
    assert_err(
        &q("'5'"),
        "'5'",
        "number of seconds after WITHIN",
        "string '5'",
    );
    assert_err(
        &q("-1"),
        "-1",
        "non-negative number of seconds after WITHIN",
        "'-1'",
    );
    assert_err(
        &q("-0.5"),
        "-0.5",
        "non-negative number of seconds after WITHIN",
        "'-0.5'",
    );
    assert_err(
        "SELECT * FROM __InstanceCreationEvent WITHIN",
        "",
        "number of seconds after WITHIN",
        "end of query",
    );
    assert_err(
        "SELECT * FROM Job WITHIN 5",
        "WITHIN",
        "WHERE or end of query",
        "'WITHIN'",
    );
}

#[test]
fn error_nesting_limit() {
    let ok_parens = format!(
        "SELECT * FROM Job WHERE {}a = 1{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    ok(&ok_parens);
    let q = format!(
        "SELECT * FROM Job WHERE {}a = 1{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let e = err(&q);
    assert_eq!(e.position, 24 + MAX_NESTING);
    assert_eq!(e.expected, "at most 64 levels of parentheses/NOT");
    assert_eq!(e.found, "expression nested too deeply");
    let q = format!(
        "SELECT * FROM Job WHERE {}a = 1",
        "NOT ".repeat(MAX_NESTING + 1)
    );
    assert_eq!(err(&q).position, 24 + 4 * MAX_NESTING);
    // Huge inputs fail cleanly rather than overflowing the stack.
    let q = format!("SELECT * FROM Job WHERE {}", "(".repeat(100_000));
    assert_eq!(err(&q).found, "expression nested too deeply");
    let q = format!("SELECT * FROM Job WHERE {}a = 1", "NOT ".repeat(100_000));
    assert_eq!(err(&q).found, "expression nested too deeply");
}

#[test]
fn error_operator_limit() {
    let chain = |n: usize| {
        let terms: Vec<String> = (0..=n).map(|i| format!("a{i} = {i}")).collect();
        format!("SELECT * FROM Job WHERE {}", terms.join(" OR "))
    };
    // The largest allowed expression still displays, evaluates and re-parses.
    let Statement::Select(q) = ok(&chain(MAX_OPERATORS)) else {
        panic!()
    };
    let f = q.filter.unwrap();
    let text = f.to_string();
    assert_eq!(
        super::eval::eval(&f, &|_: &PropertyPath| super::eval::Value::Integer(256)),
        Some(true)
    );
    ok(&format!("SELECT * FROM Job WHERE {text}"));
    let e = err(&chain(MAX_OPERATORS + 1));
    assert_eq!(e.found, "expression too complex");
    assert_eq!(e.expected, "at most 256 AND/OR/NOT operators");
    let e = err(&chain(100_000));
    assert_eq!(e.found, "expression too complex");
}

#[test]
fn reserved_words_are_not_names() {
    for w in [
        "select", "FROM", "Where", "within", "and", "or", "not", "like", "is", "isa",
    ] {
        assert!(is_reserved(w));
        assert!(parse(&format!("SELECT {w} FROM Job")).is_err(), "{w}");
        assert!(parse(&format!("SELECT * FROM {w}")).is_err(), "{w}");
    }
    assert!(!is_reserved("Name"));
    assert!(!is_reserved("TargetInstance"));
}

// ---------- property tests ----------

mod props {
    use super::super::ast::*;
    use super::super::parse;
    use super::super::parser::is_reserved;
    use super::strip;
    use proptest::prelude::*;

    const FRAGMENTS: &[&str] = &[
        "SELECT",
        "select",
        "*",
        ",",
        "FROM",
        "Job",
        "File",
        "__InstanceCreationEvent",
        "__instancemodificationevent",
        "__InstanceDeletionEvent",
        "WHERE",
        "WITHIN",
        "5",
        "TargetInstance",
        "PreviousInstance",
        ".",
        "TargetInstance.Name",
        "PreviousInstance.Size",
        "ISA",
        "'Job'",
        "Name",
        "Size",
        "AND",
        "OR",
        "NOT",
        "(",
        ")",
        "=",
        "<>",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "LIKE",
        "'a%'",
        "'it''s'",
        "\"q\\\"\"",
        "'\\x'",
        "'open",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "42",
        "-3",
        "1.5",
        "2e3",
        "2e",
        "99999999999999999999",
        "1e999",
        ";",
        "#",
        "é",
        "",
        " ",
    ];

    fn soup() -> impl Strategy<Value = String> {
        let prefix = prop::sample::select(vec![
            "",
            "SELECT * FROM Job WHERE",
            "SELECT TargetInstance.Name FROM __InstanceModificationEvent WITHIN 1 WHERE TargetInstance ISA 'Job' AND",
        ]);
        let tokens = prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40);
        (prefix, tokens).prop_map(|(p, t)| format!("{p} {}", t.join(" ")))
    }

    /// A valid printed statement with up to three token-level edits (delete,
    /// insert or replace with a fragment), reaching errors deep in the grammar.
    fn mutated() -> impl Strategy<Value = String> {
        let edit = (
            0u8..3,
            any::<prop::sample::Index>(),
            prop::sample::select(FRAGMENTS),
        );
        (statement(), prop::collection::vec(edit, 0..4)).prop_map(|(stmt, edits)| {
            let text = stmt.to_string();
            let mut words: Vec<&str> = text.split(' ').collect();
            for (kind, at, frag) in edits {
                let i = at.index(words.len() + 1);
                match kind {
                    0 if i < words.len() => {
                        words.remove(i);
                    }
                    1 if i < words.len() => words[i] = frag,
                    _ => words.insert(i, frag),
                }
            }
            words.join(" ")
        })
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z_][A-Za-z0-9_]{0,6}".prop_filter("reserved word", |s| !is_reserved(s))
    }

    fn path(event: bool) -> BoxedStrategy<PropertyPath> {
        if event {
            (any::<bool>(), name())
                .prop_map(|(target, name)| PropertyPath {
                    instance: Some(if target {
                        Instance::Target
                    } else {
                        Instance::Previous
                    }),
                    name,
                    pos: 0,
                })
                .boxed()
        } else {
            name()
                .prop_map(|name| PropertyPath {
                    instance: None,
                    name,
                    pos: 0,
                })
                .boxed()
        }
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<String>().prop_map(Literal::String),
            any::<i64>().prop_map(Literal::Integer),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Literal::Real),
            any::<bool>().prop_map(Literal::Boolean),
            Just(Literal::Null),
        ]
    }

    fn operand(event: bool) -> impl Strategy<Value = Operand> {
        prop_oneof![
            path(event).prop_map(Operand::Path),
            literal().prop_map(Operand::Literal),
        ]
    }

    fn cmp_op() -> impl Strategy<Value = CmpOp> {
        prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ])
    }

    fn expr(event: bool) -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            (operand(event), cmp_op(), operand(event))
                .prop_map(|(left, op, right)| Expr::Compare { left, op, right }),
            (operand(event), any::<String>(), any::<bool>()).prop_map(
                |(operand, pattern, negated)| Expr::Like {
                    operand,
                    pattern,
                    negated
                }
            ),
            (operand(event), any::<bool>())
                .prop_map(|(operand, negated)| Expr::IsNull { operand, negated }),
        ];
        leaf.prop_recursive(6, 48, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    fn projection(event: bool) -> impl Strategy<Value = Projection> {
        prop_oneof![
            Just(Projection::All),
            prop::collection::vec(path(event), 1..4).prop_map(Projection::Paths),
        ]
    }

    fn statement() -> impl Strategy<Value = Statement> {
        let class_name = name().prop_filter("an event class", |s| !s.starts_with("__"));
        let select = (projection(false), class_name, prop::option::of(expr(false))).prop_map(
            |(projection, name, filter)| {
                Statement::Select(SelectQuery {
                    projection,
                    class: Ident { name, pos: 0 },
                    filter,
                })
            },
        );
        let kind = prop::sample::select(EventKind::ALL.to_vec());
        let within = prop::option::of(prop_oneof![(0u32..1000).prop_map(f64::from), 0.0f64..1e9]);
        let event = (
            projection(true),
            kind,
            within,
            any::<String>(),
            prop::option::of(expr(true)),
        )
            .prop_map(|(projection, kind, within_secs, target_class, filter)| {
                Statement::Event(EventQuery {
                    projection,
                    kind,
                    within_secs,
                    target_class: Ident {
                        name: target_class,
                        pos: 0,
                    },
                    filter,
                })
            });
        prop_oneof![select, event]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(input in any::<String>()) {
            let _ = parse(&input);
        }

        #[test]
        fn never_panics_on_printable_strings(input in "\\PC{0,120}") {
            let _ = parse(&input);
        }

        #[test]
        fn token_soup_never_panics_and_round_trips(input in soup()) {
            if let Ok(stmt) = parse(&input) {
                let printed = stmt.to_string();
                let again = parse(&printed)
                    .map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
                prop_assert_eq!(strip(again), strip(stmt));
            }
        }

        #[test]
        fn mutated_statements_never_panic_and_round_trip(input in mutated()) {
            if let Ok(stmt) = parse(&input) {
                let printed = stmt.to_string();
                let again = parse(&printed)
                    .map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
                prop_assert_eq!(strip(again), strip(stmt));
            }
        }

        #[test]
        fn display_round_trips(stmt in statement()) {
            let printed = stmt.to_string();
            let parsed = parse(&printed)
                .map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
            prop_assert_eq!(strip(parsed), stmt);
        }

        #[test]
        fn expr_display_round_trips(e in expr(false)) {
            let printed = format!("SELECT * FROM Job WHERE {e}");
            let parsed = parse(&printed)
                .map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
            let Statement::Select(q) = strip(parsed) else { unreachable!() };
            prop_assert_eq!(q.filter, Some(e));
        }
    }
}
