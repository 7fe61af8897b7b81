//! Event queries: which job changes an event query reports, and the event objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::ast::{EventKind, Instance, PropertyPath};
use super::eval::{matches, Value};
use super::exec::EventPlan;
use super::schema::{job_object, Obj, Prop};
use crate::model::now_ms;
use crate::model::{ChangeKind, JobEvent, JobView, Scope};

/// Turns the stream of job changes into the events one subscription asked for.
pub struct EventFilter {
    plan: EventPlan,
    scope: Scope,
    /// The last state of each job this subscription has seen (the PreviousInstance of
    /// progress changes, which the service broadcasts without one).
    last: HashMap<Uuid, Arc<JobView>>,
    /// When a progress-only change was last reported per job (WITHIN coalescing).
    last_progress: HashMap<Uuid, Instant>,
}

impl EventFilter {
    /// A filter for `plan`, over the jobs in `scope`.
    pub fn new(plan: EventPlan, scope: Scope) -> EventFilter {
        EventFilter {
            plan,
            scope,
            last: HashMap::new(),
            last_progress: HashMap::new(),
        }
    }

    /// The event object for `ev`, if this subscription reports it.
    pub fn accept(&mut self, ev: &JobEvent) -> Option<Obj> {
        if !self.scope.admits(ev.current.job.owner_uid) {
            return None;
        }
        let id = ev.current.job.id;
        let previous = ev.previous.clone().or_else(|| self.last.get(&id).cloned());
        if ev.kind == ChangeKind::Deleted {
            self.last.remove(&id);
            self.last_progress.remove(&id);
        } else {
            self.last.insert(id, ev.current.clone());
        }
        let kind = match ev.kind {
            ChangeKind::Created => EventKind::Creation,
            ChangeKind::Modified => EventKind::Modification,
            ChangeKind::Deleted => EventKind::Deletion,
        };
        if kind != self.plan.kind {
            return None;
        }
        if kind == EventKind::Modification {
            if let Some(prev) = &previous {
                if prev.job == ev.current.job && prev.totals == ev.current.totals {
                    return None;
                }
                let progress_only = prev.job.state == ev.current.job.state;
                if progress_only {
                    let within =
                        Duration::from_secs_f64(self.plan.within_secs.unwrap_or(0.0).max(0.0));
                    if let Some(t) = self.last_progress.get(&id) {
                        if t.elapsed() < within {
                            return None;
                        }
                    }
                    self.last_progress.insert(id, Instant::now());
                }
            }
        }
        let target = job_object(&ev.current);
        let prev_obj = if kind == EventKind::Modification {
            previous.as_deref().map(job_object)
        } else {
            None
        };
        let row = |p: &PropertyPath| -> Value {
            match p.instance.unwrap_or(Instance::Target) {
                Instance::Target => target.value(&p.name),
                Instance::Previous => prev_obj
                    .as_ref()
                    .map(|o| o.value(&p.name))
                    .unwrap_or(Value::Null),
            }
        };
        if !matches(self.plan.filter.as_ref(), &row) {
            return None;
        }
        let pick = |o: Obj, which: Instance| -> Obj {
            match &self.plan.projection {
                None => o,
                Some(paths) => {
                    let names: Vec<(&'static str, &'static str)> = paths
                        .iter()
                        .filter(|(i, _)| *i == which)
                        .map(|(_, n)| *n)
                        .collect();
                    o.project(&names)
                }
            }
        };
        let mut props = vec![(
            "TargetInstance",
            Prop::Object(pick(target, Instance::Target)),
        )];
        if let Some(p) = prev_obj {
            props.push((
                "PreviousInstance",
                Prop::Object(pick(p, Instance::Previous)),
            ));
        }
        props.push(("TIME_CREATED", Prop::Value(Value::Integer(now_ms()))));
        Some(Obj {
            class: kind.class_name().to_string(),
            props,
        })
    }
}
