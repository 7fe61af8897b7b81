//! Checking a parsed query against the classes, and running it.
//!
//! A `SELECT` over `Job` whose WHERE clause is a conjunction containing simple
//! comparisons on indexed columns (`state`, `priority`, `owner_uid`, `created_unix_ms`)
//! asks SQLite for the candidate ids first; everything else — and the whole condition again
//! on the candidates — is evaluated in memory with WQL's NULL semantics.

use std::collections::HashSet;

use uuid::Uuid;

use super::ast::{CmpOp, EventKind, Expr, Instance, Literal, Operand, Projection, Statement};
use super::eval::{matches, Value};
use super::schema::{file_object, handler_object, job_object, Class, Obj};
use super::{parse, ParseError};
use crate::service::{Service, ServiceError};

/// A checked `SELECT … FROM Job | File | Handler`.
#[derive(Debug, Clone)]
pub struct SelectPlan {
    pub class: Class,
    /// Canonical property names; `None` for `*`.
    pub projection: Option<Vec<&'static str>>,
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
    pub projection: Option<Vec<(Instance, &'static str)>>,
}

fn syntax(e: ParseError) -> ServiceError {
    ServiceError::InvalidArgument(format!("WQL {e}"))
}

fn unknown_property(class: Class, name: &str, pos: usize) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "WQL at position {pos}: class {} has no property '{name}' (it has: {})",
        class.name(),
        class.properties().join(", ")
    ))
}

fn unknown_class(name: &str, pos: usize) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "WQL at position {pos}: unknown class '{name}' (expected Job, File or Handler)"
    ))
}

/// Checks every path of `filter` names a property of `class`.
fn check_filter(class: Class, filter: Option<&Expr>) -> Result<(), ServiceError> {
    let mut err = None;
    if let Some(f) = filter {
        f.walk_paths(&mut |p| {
            if err.is_none() && class.property(&p.name).is_none() {
                err = Some(unknown_property(class, &p.name, p.pos));
            }
        });
    }
    err.map_or(Ok(()), Err)
}

/// Parses and checks a data query.
pub fn plan_select(wql: &str) -> Result<SelectPlan, ServiceError> {
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
                                .property(&p.name)
                                .ok_or_else(|| unknown_property(class, &p.name, p.pos))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            check_filter(class, q.filter.as_ref())?;
            Ok(SelectPlan {
                class,
                projection,
                filter: q.filter,
            })
        }
        Statement::Event(_) => Err(ServiceError::InvalidArgument(
            "this is an event query: run it with `ferry watch` (ExecNotificationQuery)".into(),
        )),
    }
}

/// Parses and checks an event query.
pub fn plan_event(wql: &str) -> Result<EventPlan, ServiceError> {
    match parse(wql).map_err(syntax)? {
        Statement::Event(q) => {
            let class = Class::from_name(&q.target_class)
                .filter(|c| *c == Class::Job)
                .ok_or_else(|| {
                    ServiceError::InvalidArgument(format!(
                        "WQL: events are reported for class Job; '{}' is not supported",
                        q.target_class
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
                                .property(&p.name)
                                .ok_or_else(|| unknown_property(class, &p.name, p.pos))?;
                            Ok((p.instance.unwrap_or(Instance::Target), name))
                        })
                        .collect::<Result<Vec<_>, ServiceError>>()?,
                ),
            };
            Ok(EventPlan {
                kind: q.kind,
                class,
                within_secs: q.within_secs,
                filter: q.filter,
                projection,
            })
        }
        Statement::Select(_) => Err(ServiceError::InvalidArgument(
            "this is a data query, not an event query: run it with `ferry query`".into(),
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

/// One SQL predicate from a conjunct `indexed_column op literal`, if it is one.
fn sql_predicate(e: &Expr) -> Option<(String, rusqlite::types::Value)> {
    let Expr::Compare { left, op, right } = e else {
        return None;
    };
    let (path, lit, op) = match (left, right) {
        (Operand::Path(p), Operand::Literal(l)) => (p, l, *op),
        (Operand::Literal(l), Operand::Path(p)) => (p, l, flip(*op)),
        _ => return None,
    };
    let sql_op = match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    };
    let name = path.name.to_ascii_lowercase();
    match (name.as_str(), lit) {
        // Stored lower-case; WQL compares strings ignoring case.
        ("state" | "priority", Literal::String(s)) if op == CmpOp::Eq => Some((
            format!("{name} = ?"),
            rusqlite::types::Value::Text(s.to_ascii_lowercase()),
        )),
        ("owner_uid", Literal::Integer(n)) => Some((
            format!("owner_uid {sql_op} ?"),
            rusqlite::types::Value::Integer(*n),
        )),
        ("created_unix_ms", Literal::Integer(n)) => Some((
            format!("created_ms {sql_op} ?"),
            rusqlite::types::Value::Integer(*n),
        )),
        _ => None,
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

/// The ids SQLite finds for the indexable part of `filter`, or `None` when none is.
fn sql_candidates(svc: &Service, filter: &Expr) -> Result<Option<HashSet<Uuid>>, ServiceError> {
    let mut parts = Vec::new();
    conjuncts(filter, &mut parts);
    let preds: Vec<_> = parts.into_iter().filter_map(sql_predicate).collect();
    if preds.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT id FROM jobs WHERE {}",
        preds
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    let params: Vec<rusqlite::types::Value> = preds.into_iter().map(|(_, v)| v).collect();
    let ids = svc
        .store
        .read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(0)
            })?;
            rows.collect::<Result<Vec<String>, _>>()
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(Some(
        ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect(),
    ))
}

/// Runs a data query for `owner`; objects come back in a stable order.
pub async fn run_select(
    svc: &Service,
    owner: u32,
    plan: &SelectPlan,
) -> Result<Vec<Obj>, ServiceError> {
    let keep = |o: &Obj| {
        let row = |p: &super::ast::PropertyPath| -> Value { o.value(&p.name) };
        matches(plan.filter.as_ref(), &row)
    };
    let mut out: Vec<Obj> = match plan.class {
        Class::Job => {
            let candidates = match &plan.filter {
                Some(f) => {
                    // Everything changed before the query is committed before SQL is asked.
                    svc.store_barrier().await?;
                    sql_candidates(svc, f)?
                }
                None => None,
            };
            let views = match candidates {
                Some(ids) => svc.jobs_by_id(owner, ids.into_iter()),
                None => svc.list_jobs(owner, true),
            };
            views.iter().map(job_object).filter(|o| keep(o)).collect()
        }
        Class::File => svc
            .all_jobs_with_files()
            .into_iter()
            .filter(|(j, _)| j.job.owner_uid == owner)
            .flat_map(|(_, files)| files)
            .map(|f| file_object(&f))
            .filter(|o| keep(o))
            .collect(),
        Class::Handler => svc
            .handlers(owner)
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
    Ok(out)
}
