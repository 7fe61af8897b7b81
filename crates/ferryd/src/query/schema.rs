//! The WQL classes (`Job`, `File`, `Handler`) and their properties, named as in the
//! `--json` output of `ferry info` / `ferry files`.

use super::eval::Value;
use crate::model::HandlerRecord;
use crate::model::{mask_url, mask_urls_in, FileView, JobView};

/// A class that queries can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Job,
    File,
    Handler,
}

pub const JOB_PROPERTIES: &[&str] = &[
    "id",
    "display_name",
    "description",
    "type",
    "priority",
    "state",
    "owner_uid",
    "bytes_total",
    "bytes_transferred",
    "files_total",
    "files_transferred",
    "error",
    "error_count",
    "created_unix_ms",
    "modified_unix_ms",
    "transferred_unix_ms",
    "notify_flags",
    "notification_class",
    "notify_command",
    "minimum_retry_delay_secs",
    "no_progress_timeout_secs",
    "max_transfer_time_secs",
    "partial",
    "last_notification_error",
    "headers",
    "headers_write_only",
    "auto_complete",
    "insecure_tls",
    "keep_going",
    "redirect_policy",
    "pinned_public_keys",
    "crl_file",
    "client_certificate",
    "client_key",
    "proxy_credentials",
    "credentials",
    "proxy",
    "ca_file",
    "bandwidth_limit",
    "upload_protocol",
    "reply_file",
    "connections",
    "bytes_per_second",
    "umask",
    "peers",
    "bytes_from_origin",
    "bytes_from_peers",
    "on_metered",
    "waiting_for_unmetered",
    "yielding",
    "max_download_size",
    "minimum_notification_interval_ms",
    "http_method",
    "cost_flags",
    "cost_flags_set",
    "ignore_congestion",
];

pub const FILE_PROPERTIES: &[&str] = &[
    "job_id",
    "index",
    "remote_url",
    "local_path",
    "bytes_total",
    "bytes_transferred",
    "completed",
    "temporary_path",
    "expected_sha256",
    "final_url",
    "validated",
    "bytes_from_origin",
    "bytes_from_peers",
    "mirrors",
    "url_in_use",
    "response_headers",
];

pub const HANDLER_PROPERTIES: &[&str] = &["class", "argv", "workdir", "registered_unix_ms"];

/// Other names a query may give a property: `(class, alias, property)`. The API's field is
/// `Job.job_type` (BITS: `IBackgroundCopyJob::GetType`) where WQL's property, like the
/// JSON of `ferry info`, is `type`: a query may say either, and a SELECT list gets the
/// property back under the name it used.
pub const ALIASES: &[(Class, &str, &str)] = &[(Class::Job, "job_type", "type")];

impl Class {
    /// The class named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Class> {
        [Class::Job, Class::File, Class::Handler]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// Its canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Job => "Job",
            Class::File => "File",
            Class::Handler => "Handler",
        }
    }

    /// Its properties.
    pub fn properties(self) -> &'static [&'static str] {
        match self {
            Class::Job => JOB_PROPERTIES,
            Class::File => FILE_PROPERTIES,
            Class::Handler => HANDLER_PROPERTIES,
        }
    }

    /// The canonical spelling of property `name` (or of the property `name` is an alias
    /// of, see [`ALIASES`]), if the class has it.
    pub fn property(self, name: &str) -> Option<&'static str> {
        self.properties()
            .iter()
            .copied()
            .find(|p| p.eq_ignore_ascii_case(name))
            .or_else(|| self.alias(name).map(|(_, p)| p))
    }

    /// `(alias, property)` when `name` is an alias of a property of the class.
    fn alias(self, name: &str) -> Option<(&'static str, &'static str)> {
        ALIASES
            .iter()
            .find(|(c, a, _)| *c == self && a.eq_ignore_ascii_case(name))
            .map(|(_, a, p)| (*a, *p))
    }

    /// What a SELECT list naming `name` gets: `(property, the name it is shown under)`,
    /// the alias's spelling for an alias, else the property's own.
    pub fn selected(self, name: &str) -> Option<(&'static str, &'static str)> {
        match self.alias(name) {
            Some((alias, property)) => Some((property, alias)),
            None => self.property(name).map(|p| (p, p)),
        }
    }

    /// The aliases of the class's properties, as a message lists them (`job_type (type)`).
    pub fn aliases(self) -> Vec<String> {
        ALIASES
            .iter()
            .filter(|(c, _, _)| *c == self)
            .map(|(_, a, p)| format!("{a} (another name of {p})"))
            .collect()
    }
}

/// What a property holds (besides NULL): what a literal compared with it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    /// Compared as text, ignoring case (an embedded object compares as its code).
    Text,
    /// An integer; compares with integers and reals.
    Number,
    /// TRUE or FALSE.
    Boolean,
}

impl PropType {
    /// How a message names a value of this type.
    pub fn describe(self) -> &'static str {
        match self {
            PropType::Text => "text",
            PropType::Number => "a number",
            PropType::Boolean => "a boolean",
        }
    }
}

impl Class {
    /// The type of the property `name` (its canonical name, as [`Class::property`] gives).
    pub fn property_type(self, name: &str) -> PropType {
        match (self, name) {
            (
                Class::Job,
                "owner_uid"
                | "bytes_total"
                | "bytes_transferred"
                | "files_total"
                | "files_transferred"
                | "error_count"
                | "created_unix_ms"
                | "modified_unix_ms"
                | "transferred_unix_ms"
                | "notify_flags"
                | "minimum_retry_delay_secs"
                | "no_progress_timeout_secs"
                | "max_transfer_time_secs"
                | "bandwidth_limit"
                | "connections"
                | "max_download_size"
                | "minimum_notification_interval_ms"
                | "cost_flags",
            )
            | (Class::File, "index" | "bytes_total" | "bytes_transferred")
            | (Class::Handler, "registered_unix_ms") => PropType::Number,
            (
                Class::Job,
                "partial"
                | "waiting_for_unmetered"
                | "yielding"
                | "headers_write_only"
                | "auto_complete"
                | "insecure_tls"
                | "keep_going"
                | "cost_flags_set"
                | "ignore_congestion",
            )
            | (Class::File, "completed" | "validated") => PropType::Boolean,
            _ => PropType::Text,
        }
    }
}

/// A property's value in a result: a scalar, an embedded object, or a list of texts (sent
/// as a list, so that `--json` shows the same list as `ferry info`; evaluated as its items
/// joined by the separator, NULL when empty, as WHERE clauses always saw it).
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    Value(Value),
    Object(Obj),
    List(Vec<String>, &'static str),
}

/// An object of a query result or event.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj {
    pub class: String,
    pub props: Vec<(&'static str, Prop)>,
}

impl Obj {
    /// The value of property `name` for evaluation; an embedded object evaluates as its
    /// `code` (the error record) or as non-null text.
    pub fn value(&self, name: &str) -> Value {
        match self
            .props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, Prop::Value(v))) => v.clone(),
            Some((_, Prop::Object(o))) => match o.value("code") {
                Value::Null => Value::String(o.class.clone()),
                v => v,
            },
            Some((_, Prop::List(items, _))) if items.is_empty() => Value::Null,
            Some((_, Prop::List(items, separator))) => Value::String(items.join(separator)),
            None => Value::Null,
        }
    }

    /// The embedded object of property `name`, if it is one.
    pub fn object(&self, name: &str) -> Option<&Obj> {
        self.props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, p)| match p {
                Prop::Object(o) => Some(o),
                _ => None,
            })
    }

    /// Keeps only the properties `names` gives, in that order: `(property, the name it is
    /// shown under)` each, as [`Class::selected`] gives them.
    pub fn project(self, names: &[(&'static str, &'static str)]) -> Obj {
        let props = names
            .iter()
            .filter_map(|(n, shown)| {
                self.props
                    .iter()
                    .find(|(p, _)| p == n)
                    .map(|(_, v)| (*shown, v.clone()))
            })
            .collect();
        Obj {
            class: self.class,
            props,
        }
    }
}

fn s(v: impl Into<String>) -> Prop {
    Prop::Value(Value::String(v.into()))
}

fn i(v: impl TryInto<i64>) -> Prop {
    Prop::Value(v.try_into().map(Value::Integer).unwrap_or(Value::Null))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Prop) -> Prop {
    v.map(f).unwrap_or(Prop::Value(Value::Null))
}

fn b(v: bool) -> Prop {
    Prop::Value(Value::Boolean(v))
}

/// A job as a query object.
pub fn job_object(v: &JobView) -> Obj {
    let j = &v.job;
    let error = j.error.as_ref().map(|e| Obj {
        class: "JobError".into(),
        props: vec![
            ("context", s(e.context.as_str())),
            ("code", s(e.code.clone())),
            ("message", s(mask_urls_in(&e.message))),
            ("file_index", opt(e.file_index, i)),
        ],
    });
    Obj {
        class: "Job".into(),
        props: vec![
            ("id", s(j.id.to_string())),
            ("display_name", s(j.display_name.clone())),
            ("description", s(j.description.clone())),
            ("type", s(j.job_type.as_str())),
            ("priority", s(j.priority.as_str())),
            ("state", s(j.state.as_str())),
            ("owner_uid", i(j.owner_uid)),
            ("bytes_total", opt(v.totals.bytes_total, i)),
            ("bytes_transferred", i(v.totals.bytes_transferred)),
            ("files_total", i(v.totals.files_total)),
            ("files_transferred", i(v.totals.files_transferred)),
            ("error", opt(error, Prop::Object)),
            ("error_count", i(j.error_count)),
            ("created_unix_ms", i(j.created_ms)),
            ("modified_unix_ms", i(j.modified_ms)),
            ("transferred_unix_ms", opt(j.transferred_ms, i)),
            ("notify_flags", i(j.notify_flags.bits())),
            (
                "notification_class",
                opt(j.notification_class, |c| s(c.to_string())),
            ),
            ("notify_command", Prop::List(j.notify_command.clone(), " ")),
            ("minimum_retry_delay_secs", i(j.min_retry_delay_secs)),
            ("no_progress_timeout_secs", i(j.no_progress_timeout_secs)),
            ("max_transfer_time_secs", i(j.max_transfer_time_secs)),
            ("partial", b(j.partial)),
            (
                "last_notification_error",
                s(j.last_notification_error.clone()),
            ),
            ("headers", Prop::List(j.options.shown_headers(), "; ")),
            ("headers_write_only", b(j.options.headers_write_only)),
            ("auto_complete", b(j.options.auto_complete)),
            ("insecure_tls", b(j.options.insecure_tls)),
            ("keep_going", b(j.options.keep_going)),
            (
                "redirect_policy",
                s(j.options.security.redirect_policy.as_str()),
            ),
            (
                "pinned_public_keys",
                Prop::List(j.options.security.pinned_public_keys.clone(), ";"),
            ),
            ("crl_file", opt(j.options.security.crl_file.clone(), s)),
            (
                "client_certificate",
                opt(j.options.security.client_certificate.clone(), s),
            ),
            ("client_key", opt(j.options.security.client_key.clone(), s)),
            (
                "proxy_credentials",
                opt(
                    j.options
                        .security
                        .proxy_credentials
                        .as_ref()
                        .map(|c| c.public()),
                    s,
                ),
            ),
            (
                "credentials",
                opt(j.options.credentials.as_ref().map(|c| c.public()), s),
            ),
            ("proxy", s(j.options.proxy.shown())),
            ("ca_file", opt(j.options.ca_file.clone(), s)),
            ("bandwidth_limit", i(j.options.bandwidth_limit)),
            (
                "upload_protocol",
                if j.job_type == crate::model::JobType::Download {
                    Prop::Value(Value::Null)
                } else {
                    s(j.options.upload_protocol().as_str())
                },
            ),
            ("reply_file", opt(j.options.reply_file.clone(), s)),
            ("connections", i(j.options.connections)),
            ("bytes_per_second", i(v.bytes_per_second)),
            ("umask", opt(j.options.umask, i)),
            ("peers", opt(j.options.peers, |m| s(m.as_str()))),
            ("bytes_from_origin", i(v.totals.bytes_from_origin)),
            ("bytes_from_peers", i(v.totals.bytes_from_peers)),
            ("on_metered", opt(j.options.on_metered, |p| s(p.as_str()))),
            ("waiting_for_unmetered", b(v.waiting_for_unmetered)),
            ("yielding", b(v.yielding)),
            ("max_download_size", i(j.options.max_download_size)),
            (
                "minimum_notification_interval_ms",
                i(j.options.minimum_notification_interval_ms),
            ),
            ("http_method", opt(j.options.http_method.clone(), s)),
            ("cost_flags", i(j.cost_flags().bits())),
            ("cost_flags_set", b(j.options.cost_flags.is_some())),
            ("ignore_congestion", b(j.options.ignore_congestion)),
        ],
    }
}

/// A file as a query object.
pub fn file_object(v: &FileView) -> Obj {
    let f = &v.file;
    Obj {
        class: "File".into(),
        props: vec![
            ("job_id", s(f.job_id.to_string())),
            ("index", i(f.index)),
            ("remote_url", s(mask_url(&f.remote_url))),
            ("local_path", s(f.local_path.clone())),
            ("bytes_total", opt(f.bytes_total, i)),
            ("bytes_transferred", i(v.bytes_transferred)),
            ("completed", b(f.completed)),
            (
                "temporary_path",
                s(f.temporary_path().to_string_lossy().into_owned()),
            ),
            ("expected_sha256", opt(f.expected_sha256.clone(), s)),
            ("final_url", opt(f.final_url.as_deref(), |u| s(mask_url(u)))),
            ("validated", opt(f.validated, b)),
            ("bytes_from_origin", i(f.peer.from_origin)),
            ("bytes_from_peers", i(f.peer.from_peers)),
            (
                "mirrors",
                Prop::List(
                    f.mirrors.iter().map(|m| mask_url(m).into_owned()).collect(),
                    " ",
                ),
            ),
            ("url_in_use", s(mask_url(f.url_in_use()))),
            // As BITS gives them: one header a line (a WHERE sees them so joined).
            (
                "response_headers",
                Prop::List(
                    f.response_headers
                        .iter()
                        .map(|(n, v)| format!("{n}: {v}"))
                        .collect(),
                    "\n",
                ),
            ),
        ],
    }
}

/// A handler as a query object (`argv` evaluated as joined by spaces).
pub fn handler_object(h: &HandlerRecord) -> Obj {
    Obj {
        class: "Handler".into(),
        props: vec![
            ("class", s(h.class.to_string())),
            ("argv", Prop::List(h.argv.clone(), " ")),
            ("workdir", opt(h.workdir.clone(), s)),
            ("registered_unix_ms", i(h.registered_ms)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobRecord, JobType, Priority, Totals};

    #[test]
    fn every_job_property_is_produced_in_order() {
        let v = JobView {
            job: JobRecord::new("n".into(), JobType::Download, Priority::Normal, 0),
            totals: Totals::default(),
            bytes_per_second: 0,
            waiting_for_unmetered: false,
            yielding: false,
        };
        let names: Vec<&str> = job_object(&v).props.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, JOB_PROPERTIES);
    }

    /// Objects hold the masked values, so no condition can test a secret either
    /// (`WHERE headers LIKE 'Authorization: Bearer a%'` would read it a letter at a time).
    #[test]
    fn secrets_are_masked_in_objects_and_so_in_conditions() {
        use crate::model::{
            Credentials, ErrorContext, FilePeerInfo, FileRecord, JobErrorRecord, ProxySetting,
        };
        let mut job = JobRecord::new("n".into(), JobType::Download, Priority::Normal, 0);
        job.options.headers = vec![
            ("Authorization".into(), "Bearer s3cret-1".into()),
            ("X-Trace".into(), "visible".into()),
        ];
        job.options.credentials = Some(Credentials::Bearer {
            token: "s3cret-2".into(),
        });
        job.options.proxy = ProxySetting::Url("http://pu:s3cret-3@proxy:3128/".into());
        job.error = Some(JobErrorRecord {
            context: ErrorContext::RemoteFile,
            code: "http_401".into(),
            message: "server answered 401 for https://u:s3cret-4@h/f".into(),
            file_index: Some(0),
            time_ms: 0,
        });
        let v = JobView {
            job,
            totals: Totals::default(),
            bytes_per_second: 0,
            waiting_for_unmetered: false,
            yielding: false,
        };
        let o = job_object(&v);
        let dump = format!("{o:?}");
        assert!(!dump.contains("s3cret"), "{dump}");
        assert_eq!(
            o.value("headers"),
            Value::String("Authorization: ***; X-Trace: visible".into())
        );
        assert_eq!(
            o.value("proxy"),
            Value::String("http://pu:***@proxy:3128/".into())
        );
        assert_eq!(o.value("headers_write_only"), Value::Boolean(false));

        let f = FileView {
            file: FileRecord {
                job_id: v.job.id,
                index: 0,
                remote_url: "https://u:s3cret-5@h/f".into(),
                local_path: "/tmp/f".into(),
                bytes_total: None,
                bytes_transferred: 0,
                completed: false,
                expected_sha256: None,
                final_url: Some("https://u:s3cret-6@h/g".into()),
                validator: None,
                validated: None,
                segments: Vec::new(),
                peer: FilePeerInfo::default(),
                mirrors: Vec::new(),
                mirror_in_use: 0,
                response_headers: vec![("ETag".into(), "\"v9\"".into())],
                ranges: Default::default(),
            },
            bytes_transferred: 0,
        };
        let o = file_object(&f);
        assert!(!format!("{o:?}").contains("s3cret"), "{o:?}");
        assert_eq!(
            o.value("remote_url"),
            Value::String("https://u:***@h/f".into())
        );
    }
}
