//! Checking a parsed query against the classes, and running it over a [`Source`].
//!
//! A `SELECT` over `Job` whose WHERE clause is a conjunction containing simple
//! comparisons on the columns the source indexes (`state`, `priority`, `owner_uid`,
//! `created_unix_ms`) hands those to the source as a [`Prefilter`], so it can skip jobs
//! without building them; the whole condition is then evaluated on what it returns, in
//! memory, with WQL's NULL semantics.

use super::ast::{
    CmpOp, EventKind, Expr, Instance, Literal, Operand, Projection, PropertyPath, Statement,
};
use super::eval::{matches, Value};
use super::schema::{file_object, handler_object, job_object, Class, Obj, PropType};
use super::{parse, ParseError};
use crate::model::{FileView, HandlerRecord, JobState, JobView, Priority, Scope};

/// A query that cannot run: what is wrong with it (an invalid argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Where a data query finds its objects (the service's jobs, in memory).
pub trait Source {
    /// The jobs in `scope` that `pre` admits, oldest first.
    fn jobs(&self, scope: Scope, pre: &Prefilter) -> Vec<JobView>;
    /// The files of every job in `scope`.
    fn files(&self, scope: Scope) -> Vec<FileView>;
    /// The handlers registered by the users in `scope`.
    fn handlers(&self, scope: Scope) -> Vec<HandlerRecord>;
}

/// One condition of a [`Prefilter`].
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    State(JobState),
    Priority(Priority),
    OwnerUid(CmpOp, i64),
    Created(CmpOp, i64),
    /// A state or priority that does not exist: nothing matches.
    Never,
}

/// Conditions on a job's indexed columns that every result must meet (a conjunction):
/// the part of a WHERE clause a source can check without building the job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefilter {
    conds: Vec<Cond>,
}

fn compare(op: CmpOp, a: i64, b: i64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

impl Prefilter {
    /// Whether a job with these columns may match.
    pub fn admits(
        &self,
        state: JobState,
        priority: Priority,
        owner_uid: u32,
        created_ms: i64,
    ) -> bool {
        self.conds.iter().all(|c| match *c {
            Cond::State(s) => s == state,
            Cond::Priority(p) => p == priority,
            Cond::OwnerUid(op, n) => compare(op, owner_uid as i64, n),
            Cond::Created(op, n) => compare(op, created_ms, n),
            Cond::Never => false,
        })
    }

    /// True when it admits every job.
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// The state every result has, when the filter names one.
    pub fn state(&self) -> Option<JobState> {
        self.conds.iter().find_map(|c| match c {
            Cond::State(s) => Some(*s),
            _ => None,
        })
    }
}

/// A checked `SELECT … FROM Job | File | Handler`.
#[derive(Debug, Clone)]
pub struct SelectPlan {
    pub class: Class,
    /// Canonical property names; `None` for `*`.
    /// `(property, the name it is shown under)` each ([`Class::selected`]).
    pub projection: Option<Vec<(&'static str, &'static str)>>,
    pub filter: Option<Expr>,
}

/// A checked event query.
#[derive(Debug, Clone)]
pub struct EventPlan {
    pub kind: EventKind,
    pub class: Class,
    pub within_secs: Option<f64>,
    pub filter: Option<Expr>,
    /// `None` for `*`; otherwise paths such as `TargetInstance.state`.
    pub projection: Option<Vec<(Instance, (&'static str, &'static str))>>,
}

fn syntax(e: ParseError) -> QueryError {
    QueryError(format!("WQL {e}"))
}

fn unknown_property(class: Class, name: &str, pos: usize) -> QueryError {
    let mut has = class.properties().join(", ");
    for alias in class.aliases() {
        has = format!("{has}; also {alias}");
    }
    QueryError(format!(
        "WQL at position {pos}: class {} has no property '{name}' (it has: {has})",
        class.name(),
    ))
}

/// `filter` with every property named by its canonical spelling (an alias such as
/// `job_type` is evaluated as the property it names); checked before.
fn canonical_filter(class: Class, filter: Option<Expr>) -> Option<Expr> {
    filter.map(|mut f| {
        f.walk_paths_mut(&mut |p| {
            if let Some(canonical) = class.property(&p.name) {
                p.name = canonical.to_string();
            }
        });
        f
    })
}

fn unknown_class(name: &str, pos: usize) -> QueryError {
    QueryError(format!(
        "WQL at position {pos}: unknown class '{name}' (expected Job, File or Handler)"
    ))
}

/// Checks every path of `filter` names a property of `class`, and that what each property
/// is compared with is of its type (a condition that could never be true is a mistake:
/// `bytes_total > 'abc'`).
fn check_filter(class: Class, filter: Option<&Expr>) -> Result<(), QueryError> {
    let Some(f) = filter else {
        return Ok(());
    };
    let mut err = None;
    f.walk_paths(&mut |p| {
        if err.is_none() && class.property(&p.name).is_none() {
            err = Some(unknown_property(class, &p.name, p.pos));
        }
    });
    err.map_or(Ok(()), Err)?;
    check_types(class, f)
}

/// The type of a literal, `None` for NULL (which compares with anything, to unknown).
fn literal_type(l: &Literal) -> Option<PropType> {
    match l {
        Literal::String(_) => Some(PropType::Text),
        Literal::Integer(_) | Literal::Real(_) => Some(PropType::Number),
        Literal::Boolean(_) => Some(PropType::Boolean),
        Literal::Null => None,
    }
}

fn type_error(class: Class, path: &PropertyPath, what: String) -> QueryError {
    let name = class.property(&path.name).unwrap_or("?");
    let has = class.property_type(name);
    QueryError(format!(
        "WQL at position {}: {name} is {}, so comparing it with {what} is never true",
        path.pos,
        has.describe(),
    ))
}

/// Checks the operands of every comparison and LIKE in `e` against the property types.
fn check_types(class: Class, e: &Expr) -> Result<(), QueryError> {
    let type_of = |p: &PropertyPath| class.property_type(class.property(&p.name).unwrap_or(""));
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_types(class, a)?;
            check_types(class, b)
        }
        Expr::Not(a) => check_types(class, a),
        Expr::IsNull { .. } => Ok(()),
        Expr::Like { operand, .. } => match operand {
            Operand::Path(p) if type_of(p) != PropType::Text => {
                Err(type_error(class, p, "a LIKE pattern".into()))
            }
            _ => Ok(()),
        },
        Expr::Compare { left, right, .. } => match (left, right) {
            (Operand::Path(p), Operand::Literal(l)) | (Operand::Literal(l), Operand::Path(p)) => {
                match literal_type(l) {
                    Some(t) if t != type_of(p) => {
                        Err(type_error(class, p, format!("{} ({l})", t.describe())))
                    }
                    _ => Ok(()),
                }
            }
            (Operand::Path(a), Operand::Path(b)) if type_of(a) != type_of(b) => {
                let other = class.property(&b.name).unwrap_or("?");
                let what = format!("{other}, which is {}", type_of(b).describe());
                Err(type_error(class, a, what))
            }
            _ => Ok(()),
        },
    }
}

/// Parses and checks a data query.
pub fn plan_select(wql: &str) -> Result<SelectPlan, QueryError> {
    match parse(wql).map_err(syntax)? {
        Statement::Select(q) => {
            let class = Class::from_name(&q.class.name)
                .ok_or_else(|| unknown_class(&q.class.name, q.class.pos))?;
            let projection = match q.projection {
                Projection::All => None,
                Projection::Paths(paths) => Some(
                    paths
                        .iter()
                        .map(|p| {
                            class
                                .selected(&p.name)
                                .ok_or_else(|| unknown_property(class, &p.name, p.pos))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            check_filter(class, q.filter.as_ref())?;
            Ok(SelectPlan {
                class,
                projection,
                filter: canonical_filter(class, q.filter),
            })
        }
        Statement::Event(_) => Err(QueryError(
            "this is an event query: run it with ExecNotificationQuery".into(),
        )),
    }
}

/// Whether `wql` parses as an event query (`Some(true)`) or a data query
/// (`Some(false)`); `None` when it does not parse.
pub fn is_event_query(wql: &str) -> Option<bool> {
    parse(wql).ok().map(|s| matches!(s, Statement::Event(_)))
}

/// Parses and checks an event query.
pub fn plan_event(wql: &str) -> Result<EventPlan, QueryError> {
    match parse(wql).map_err(syntax)? {
        Statement::Event(q) => {
            let class = Class::from_name(&q.target_class.name)
                .filter(|c| *c == Class::Job)
                .ok_or_else(|| {
                    QueryError(format!(
                        "WQL at position {}: events are reported for class Job only; \
                         '{}' is not supported",
                        q.target_class.pos, q.target_class.name
                    ))
                })?;
            check_filter(class, q.filter.as_ref())?;
            let projection = match q.projection {
                Projection::All => None,
                Projection::Paths(paths) => Some(
                    paths
                        .iter()
                        .map(|p| {
                            let name = class
                                .selected(&p.name)
                                .ok_or_else(|| unknown_property(class, &p.name, p.pos))?;
                            Ok((p.instance.unwrap_or(Instance::Target), name))
                        })
                        .collect::<Result<Vec<_>, QueryError>>()?,
                ),
            };
            Ok(EventPlan {
                kind: q.kind,
                class,
                within_secs: q.within_secs,
                filter: canonical_filter(class, q.filter),
                projection,
            })
        }
        Statement::Select(_) => Err(QueryError(
            "this is a data query, not an event query: run it with ExecQuery".into(),
        )),
    }
}

/// Top-level conjuncts of `e`.
fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

/// The prefilter condition of a conjunct `indexed_column op literal`, if it is one.
fn condition(e: &Expr) -> Option<Cond> {
    let Expr::Compare { left, op, right } = e else {
        return None;
    };
    let (path, lit, op) = match (left, right) {
        (Operand::Path(p), Operand::Literal(l)) => (p, l, *op),
        (Operand::Literal(l), Operand::Path(p)) => (p, l, flip(*op)),
        _ => return None,
    };
    let name = path.name.to_ascii_lowercase();
    match (name.as_str(), lit) {
        // WQL compares strings ignoring case.
        ("state", Literal::String(s)) if op == CmpOp::Eq => {
            Some(s.parse().map(Cond::State).unwrap_or(Cond::Never))
        }
        ("priority", Literal::String(s)) if op == CmpOp::Eq => {
            Some(s.parse().map(Cond::Priority).unwrap_or(Cond::Never))
        }
        ("owner_uid", Literal::Integer(n)) => Some(Cond::OwnerUid(op, *n)),
        ("created_unix_ms", Literal::Integer(n)) => Some(Cond::Created(op, *n)),
        _ => None,
    }
}

/// The indexable part of `filter`.
pub fn prefilter(filter: Option<&Expr>) -> Prefilter {
    let mut parts = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut parts);
    }
    Prefilter {
        conds: parts.into_iter().filter_map(condition).collect(),
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        o => o,
    }
}

/// Runs a data query over the objects in `scope`; objects come back in a stable order.
pub fn run_select(source: &impl Source, scope: Scope, plan: &SelectPlan) -> Vec<Obj> {
    let keep = |o: &Obj| {
        let row = |p: &super::ast::PropertyPath| -> Value { o.value(&p.name) };
        matches(plan.filter.as_ref(), &row)
    };
    let mut out: Vec<Obj> = match plan.class {
        Class::Job => source
            .jobs(scope, &prefilter(plan.filter.as_ref()))
            .iter()
            .map(job_object)
            .filter(|o| keep(o))
            .collect(),
        Class::File => source
            .files(scope)
            .iter()
            .map(file_object)
            .filter(|o| keep(o))
            .collect(),
        Class::Handler => source
            .handlers(scope)
            .iter()
            .map(handler_object)
            .filter(|o| keep(o))
            .collect(),
    };
    if plan.class == Class::File {
        let key = |o: &Obj| match (o.value("job_id"), o.value("index")) {
            (Value::String(j), Value::Integer(i)) => (j, i),
            _ => (String::new(), 0),
        };
        out.sort_by_key(key);
    }
    if let Some(names) = &plan.projection {
        out = out.into_iter().map(|o| o.project(names)).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select_error(wql: &str) -> String {
        plan_select(wql).map(|_| ()).unwrap_err().0
    }

    fn event_error(wql: &str) -> String {
        plan_event(wql).map(|_| ()).unwrap_err().0
    }

    #[test]
    fn a_literal_of_another_type_is_refused_with_its_position() {
        let e = select_error("SELECT * FROM Job WHERE bytes_total > 'abc'");
        assert!(
            e.starts_with("WQL at position 24: bytes_total is a number"),
            "{e}"
        );
        assert!(e.contains("text ('abc')"), "{e}");
        let e = select_error("SELECT id FROM Job WHERE state = 'queued' OR 3 < state");
        assert!(e.contains("position 49: state is text"), "{e}");
        let e = select_error("SELECT * FROM File WHERE completed = 1");
        assert!(e.contains("completed is a boolean"), "{e}");
        let e = select_error("SELECT * FROM Job WHERE owner_uid LIKE '1%'");
        assert!(
            e.contains("owner_uid is a number") && e.contains("LIKE"),
            "{e}"
        );
        let e = select_error("SELECT * FROM Job WHERE bytes_total = display_name");
        assert!(e.contains("display_name, which is text"), "{e}");
        let e = event_error(
            "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job' \
             AND TargetInstance.bytes_transferred > PreviousInstance.state",
        );
        assert!(e.contains("bytes_transferred is a number"), "{e}");
    }

    #[test]
    fn literals_of_the_right_type_and_null_are_accepted() {
        for wql in [
            "SELECT * FROM Job WHERE bytes_total > 10 AND bytes_total < 2.5e9",
            "SELECT * FROM Job WHERE state = 'error' AND error = 'http_404'",
            "SELECT * FROM Job WHERE partial = FALSE AND bytes_total = NULL",
            "SELECT * FROM File WHERE validated IS NULL AND remote_url LIKE 'https:%'",
            "SELECT * FROM Job WHERE bytes_transferred < bytes_total",
        ] {
            assert!(
                plan_select(wql).is_ok(),
                "{wql}: {:?}",
                plan_select(wql).err()
            );
        }
    }

    #[test]
    fn an_unknown_event_class_is_named_as_such() {
        let wql = "SELECT * FROM __InstanceFooEvent WHERE TargetInstance ISA 'Job'";
        let e = select_error(wql);
        assert!(
            e.contains("position 14") && e.contains("unknown event class '__InstanceFooEvent'"),
            "{e}"
        );
        assert!(!e.contains("ISA"), "{e}");
        assert_eq!(e, event_error(wql));
    }

    #[test]
    fn events_over_another_class_are_refused_with_the_position_of_the_class() {
        let e =
            event_error("SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'File'");
        assert!(e.starts_with("WQL at position 63: "), "{e}");
        assert!(e.contains("'File' is not supported"), "{e}");
    }

    /// The API's `job_type` names WQL's `type`; a SELECT list shows it as asked.
    #[test]
    fn parity_wql_accepts_job_type_as_the_api_names_it() {
        let plan = plan_select(
            "SELECT id, job_type, TYPE FROM Job WHERE job_type = 'upload' AND yielding = FALSE \
             AND on_metered = 'continue'",
        )
        .unwrap();
        assert_eq!(
            plan.projection,
            Some(vec![("id", "id"), ("type", "job_type"), ("type", "type")])
        );
        let mut names = Vec::new();
        plan.filter
            .unwrap()
            .walk_paths(&mut |p| names.push(p.name.clone()));
        assert_eq!(names, ["type", "yielding", "on_metered"]);
        let e = select_error("SELECT * FROM Job WHERE job_type = 1");
        assert!(e.contains("type is text"), "{e}");
        let e = select_error("SELECT jobtype FROM Job");
        assert!(e.contains("also job_type (another name of type)"), "{e}");
        let plan = plan_event(
            "SELECT TargetInstance.job_type FROM __InstanceModificationEvent \
             WHERE TargetInstance ISA 'Job' AND TargetInstance.job_type = 'download'",
        )
        .unwrap();
        assert_eq!(
            plan.projection,
            Some(vec![(Instance::Target, ("type", "job_type"))])
        );
    }
}
