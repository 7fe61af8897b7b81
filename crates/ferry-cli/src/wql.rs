//! `ferry query` and `ferry watch`: WQL data and event queries.

use anyhow::Result;

use crate::commands::Ctx;
use crate::output;
use crate::progress::Display;
use ferry_cli::args::QueryArgs;

fn value_text(v: &ferry_client::Value) -> String {
    use ferry_client::Value as V;
    match v {
        V::Null => "NULL".into(),
        V::String(s) => s.clone(),
        V::Integer(i) => i.to_string(),
        V::Real(r) => r.to_string(),
        V::Boolean(b) => b.to_string(),
        V::Object(o) => serde_json::to_string(o).unwrap_or_default(),
        V::List(items) => items.join(" "),
    }
}

pub async fn query(ctx: &Ctx, a: QueryArgs) -> Result<i32> {
    let options = ferry_client::QueryOptions {
        batch_size: a.batch_size,
        ..Default::default()
    };
    let objects = ctx
        .manager()
        .await?
        .exec_query_with(&a.wql, options)
        .await?;
    if ctx.json {
        // One array, as `ferry list` prints; each object has the properties (names,
        // types) of `ferry info`'s job or `ferry files`'s file that the query selects.
        output::json(&objects);
        return Ok(0);
    }
    let Some(first) = objects.first() else {
        outln!("(no objects)");
        return Ok(0);
    };
    let names: Vec<&str> = first.properties.iter().map(|(n, _)| n.as_str()).collect();
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| o.properties.iter().map(|(_, v)| value_text(v)).collect())
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                .max(n.len())
                .min(60)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    outln!("{}", line(names.iter().map(|n| n.to_uppercase()).collect()));
    for r in rows {
        outln!("{}", line(r));
    }
    outln!(
        "({} object{})",
        objects.len(),
        if objects.len() == 1 { "" } else { "s" }
    );
    Ok(0)
}

/// Prints events until interrupted. A daemon that goes away and comes back is waited
/// for (the library subscribes again): a note on standard error says so.
pub async fn watch(ctx: &Ctx, a: QueryArgs) -> Result<i32> {
    let manager = ctx.manager().await?;
    let display = Display::new(false, false);
    let _follow = display.follow_connection(&manager, None);
    let mut events = manager.exec_notification_query_semisync(&a.wql).await?;
    loop {
        let next = tokio::select! {
            n = events.next(std::time::Duration::from_secs(3600), 1) => n?,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        for ev in &next.objects {
            if ctx.json {
                // One event a line (a stream): its class, then its instances, each a job
                // as `ferry info --json` prints it (or the properties selected).
                output::json(&Event(ev));
            } else {
                let target = ev.get_object("TargetInstance");
                let prev = ev.get_object("PreviousInstance");
                let get = |o: Option<&ferry_client::Object>, n: &str| {
                    o.and_then(|o| o.get(n)).map(value_text).unwrap_or_default()
                };
                let state = match prev {
                    Some(_) if get(prev, "state") != get(target, "state") => {
                        format!("{} -> {}", get(prev, "state"), get(target, "state"))
                    }
                    _ => get(target, "state"),
                };
                outln!(
                    "{} {} {} {} bytes={}",
                    ev.class,
                    get(target, "id"),
                    get(target, "display_name"),
                    state,
                    get(target, "bytes_transferred")
                );
            }
        }
        if next.reconnected {
            display
                .note("ferry: subscribed again; changes made while ferryd was away are not shown");
        }
        if next.done {
            if let Some(s) = next.status {
                if s.code == ferry_client::StatusCode::ShuttingDown {
                    eprintln!(
                        "ferry: the subscription ended: ferryd went away and did not come \
                         back ({}); run `ferry daemon start` and watch again",
                        s.message
                    );
                    return Ok(1);
                }
                if s.code != ferry_client::StatusCode::Ok {
                    eprintln!("ferry: the subscription ended: {}", s.message);
                    return Ok(1);
                }
            }
            return Ok(0);
        }
    }
}

/// An event as `ferry watch --json` prints it: `{"__CLASS": …, "TargetInstance": …,
/// "PreviousInstance": …, "TIME_CREATED": …}` (WMI's name for an object's class).
struct Event<'a>(&'a ferry_client::Object);

impl serde::Serialize for Event<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.properties.len() + 1))?;
        m.serialize_entry("__CLASS", &self.0.class)?;
        for (name, value) in &self.0.properties {
            m.serialize_entry(name, value)?;
        }
        m.end()
    }
}
