//! The command that changes a job's properties, and the checks and changes it shares with
//! `create_job` (which sets properties at creation): [`Service::check_changes`] looks at
//! everything that can be refused before any job is touched, [`apply_changes`] changes a
//! record.

use uuid::Uuid;

use super::commands::{final_state_error, JobChanges};
use super::{validate, JobView, Service, ServiceError};
use crate::model::{Credentials, JobRecord, JobState, JobType, NotifyFlags, ProxySetting};
use crate::store::Store;

/// The longest minimum notification interval a job may set: a day.
pub const MAX_NOTIFICATION_INTERVAL_MS: u64 = 86_400_000;

/// Property changes that passed every check that needs no job: headers parsed, proxy
/// understood, CA and reply files looked at as the owner.
pub(super) struct CheckedChanges {
    /// What is applied as given (headers, proxy, CA file and reply file are taken out).
    changes: JobChanges,
    headers: Option<Vec<(String, String)>>,
    proxy: Option<ProxySetting>,
    /// `Some(None)` clears it.
    ca_file: Option<Option<String>>,
    /// `Some(None)` clears it.
    reply_file: Option<Option<String>>,
    /// The pins one by one, checked.
    pins: Option<Vec<String>>,
    /// `Some(None)` clears it (each of the three).
    crl_file: Option<Option<String>>,
    client_certificate: Option<Option<String>>,
    client_key: Option<Option<String>>,
}

impl Service {
    /// Checks `changes` as far as it can without the job: text, flags, the notify
    /// command's program, headers, proxy, credentials, and the CA and reply files (as the
    /// owner).
    pub(super) async fn check_changes(
        &self,
        owner: u32,
        mut changes: JobChanges,
    ) -> Result<CheckedChanges, ServiceError> {
        if let Some(name) = &changes.display_name {
            validate::text("display_name", name)?;
        }
        if let Some(d) = &changes.description {
            validate::text("description", d)?;
        }
        if let Some(flags) = changes.notify_flags {
            if NotifyFlags::from_bits(flags).is_none() {
                return Err(ServiceError::InvalidArgument(format!(
                    "notify flags {flags:#x} include unknown bits (known: {:#x})",
                    NotifyFlags::all().bits()
                )));
            }
        }
        if let Some(cmd) = &changes.notify_command {
            validate::command("notify_command", cmd)?;
            if let Some(prog) = cmd.first() {
                if !std::path::Path::new(prog).is_absolute() {
                    return Err(ServiceError::InvalidArgument(format!(
                        "the notify command's program '{prog}' must be an absolute path"
                    )));
                }
            }
        }
        if let Some(ms) = changes.minimum_notification_interval_ms {
            if ms > MAX_NOTIFICATION_INTERVAL_MS {
                return Err(ServiceError::InvalidArgument(format!(
                    "a minimum notification interval of {ms} ms is too long (at most \
                     {MAX_NOTIFICATION_INTERVAL_MS} ms, a day; 0 takes the default, 500 ms)"
                )));
            }
        }
        if let Some(m) = &changes.http_method {
            validate::http_method(m)?;
        }
        if let Some(v) = changes.connections {
            if v > 16 {
                return Err(ServiceError::InvalidArgument(format!(
                    "{v} connections per file is too many (at most 16)"
                )));
            }
        }
        let headers = changes
            .headers
            .take()
            .map(|hs| {
                hs.iter()
                    .enumerate()
                    .map(|(i, h)| validate::header(&format!("headers[{i}]"), h))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(hs) = &headers {
            self.check_header_bytes(hs)?;
        }
        let proxy = changes
            .proxy
            .take()
            .as_deref()
            .map(validate::proxy)
            .transpose()?;
        let ca_file = match changes.ca_file.take().as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some({
                validate::local_path("ca_file", p)?;
                self.owners
                    .of(owner)
                    .check_regular_file("the CA file", p.to_string())
                    .await
                    .map_err(ServiceError::InvalidArgument)?
            })),
        };
        let crl_file = self
            .owner_file(owner, "crl_file", "the CRL file", changes.crl_file.take())
            .await?;
        let client_certificate = self
            .owner_file(
                owner,
                "client_certificate",
                "the client certificate",
                changes.client_certificate.take(),
            )
            .await?;
        let client_key = self
            .owner_file(
                owner,
                "client_key",
                "the client key",
                changes.client_key.take(),
            )
            .await?;
        let pins = changes
            .pinned_public_keys
            .take()
            .map(|p| validate::public_key_pins(&p))
            .transpose()?;
        let reply_file = match changes.reply_file.take().as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some({
                validate::local_path("reply_file", p)?;
                self.owners
                    .of(owner)
                    .check_destination(p.to_string())
                    .await
                    .map_err(ServiceError::InvalidArgument)?
            })),
        };
        if let Some(Some(Credentials::Digest { user, .. })) = &changes.credentials {
            validate::no_control_chars("credentials.digest.user", user)?;
            if user.contains('"') {
                return Err(ServiceError::InvalidArgument(
                    "a digest user name cannot contain '\"'".into(),
                ));
            }
        }
        if let Some(Some(c)) = &changes.proxy_credentials {
            validate::no_control_chars("proxy_credentials.user", &c.user)?;
            if c.user.contains(':') {
                return Err(ServiceError::InvalidArgument(
                    "a proxy user name cannot contain ':'".into(),
                ));
            }
        }
        if let Some(Some(Credentials::Basic { user, .. })) = &changes.credentials {
            // The user is shown (`basic USER`); the password never is.
            validate::no_control_chars("credentials.basic.user", user)?;
            if user.contains(':') {
                return Err(ServiceError::InvalidArgument(
                    "a basic-auth user name cannot contain ':'".into(),
                ));
            }
        }
        if let Some(Some(Credentials::Negotiate {
            ccache: Some(ccache),
        })) = &changes.credentials
        {
            validate::no_control_chars("credentials.negotiate.ccache", ccache)?;
            if ccache.len() > 4096 {
                return Err(ServiceError::InvalidArgument(
                    "credentials.negotiate.ccache is over 4096 bytes: give a credential cache \
                     name as KRB5CCNAME holds one (FILE:/tmp/krb5cc_1000, KCM:…)"
                        .into(),
                ));
            }
        }
        Ok(CheckedChanges {
            changes,
            headers,
            proxy,
            ca_file,
            reply_file,
            pins,
            crl_file,
            client_certificate,
            client_key,
        })
    }

    /// A file a job's options name (`field`), checked as the owner as the CA file is: a
    /// regular file the owner may read. `Some("")` clears it (`Some(None)`).
    async fn owner_file(
        &self,
        owner: u32,
        field: &str,
        what: &'static str,
        path: Option<String>,
    ) -> Result<Option<Option<String>>, ServiceError> {
        Ok(match path.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some({
                validate::local_path(field, p)?;
                self.owners
                    .of(owner)
                    .check_regular_file(what, p.to_string())
                    .await
                    .map_err(ServiceError::InvalidArgument)?
            })),
        })
    }

    /// Changes properties of a job.
    pub async fn set_properties(
        &self,
        owner: u32,
        id: Uuid,
        changes: JobChanges,
    ) -> Result<JobView, ServiceError> {
        self.check_writable()?;
        self.check_store_room().await?;
        let requeue = changes.priority.is_some();
        let cost_policy_changed =
            requeue || changes.on_metered.is_some() || changes.cost_flags.is_some();
        let changed_command = changes
            .notify_command
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        let changed_class = matches!(changes.notification_class, Some(Some(_)));
        let checked = self.check_changes(owner, changes).await?;
        let view = self
            .mutate(owner, id, "change", |inner, id| {
                let state = inner.jobs[&id].job.state;
                if state.is_final() {
                    return Err(final_state_error(id, state, "change"));
                }
                apply_changes(&mut inner.jobs.get_mut(&id).expect("exists").job, checked)?;
                if requeue && state == JobState::Queued {
                    inner.set_state(id, JobState::Queued);
                }
                inner.refresh_hold(id);
                Ok(true)
            })
            .await?;
        if cost_policy_changed {
            self.enforce_cost(id).await;
        }
        // A notify command (or class) set after the job transferred or failed still runs.
        if matches!(view.job.state, JobState::Transferred | JobState::Error)
            && self.notifier.pending(id) == 0
            && (changed_command || changed_class)
        {
            let outbox = self.due_notifications(&view.job, Some(view.job.state), &[]);
            let rx = self.persist_with_outbox(&view.job, Vec::new(), &outbox);
            Store::committed(rx).await.map_err(ServiceError::from)?;
            self.notifier.enqueue(id, outbox);
        }
        self.notifier.kick(id);
        Ok(view)
    }
}

/// Applies checked changes to `j`; refuses (leaving `j` as it was) what depends on the
/// job's type or on what it already has (write-only headers stay write-only).
pub(super) fn apply_changes(
    j: &mut JobRecord,
    checked: CheckedChanges,
) -> Result<(), ServiceError> {
    let CheckedChanges {
        changes,
        headers,
        proxy,
        ca_file,
        reply_file,
        pins,
        crl_file,
        client_certificate,
        client_key,
    } = checked;
    if changes
        .http_method
        .as_deref()
        .is_some_and(|m| !m.is_empty())
        && j.job_type != JobType::Download
        && j.options.upload_protocol() == crate::model::UploadProtocol::Tus
    {
        return Err(ServiceError::InvalidArgument(
            "a tus upload's methods are the protocol's (POST, HEAD, PATCH): http_method \
             applies to downloads and PUT uploads"
                .into(),
        ));
    }
    if let Some(Some(_)) = &reply_file {
        if j.job_type != JobType::UploadReply {
            return Err(ServiceError::InvalidArgument(
                "a reply file applies to upload_reply jobs only".into(),
            ));
        }
    }
    // BITS's MakeCustomHeadersWriteOnly cannot be undone either: turning it off would show
    // the values it hid.
    if changes.headers_write_only == Some(false) && j.options.headers_write_only {
        return Err(ServiceError::FailedPrecondition(format!(
            "job {} has write-only headers and keeps them: headers_write_only cannot be set \
             back to false (headers replaces the headers; a new job starts without it)",
            j.id
        )));
    }
    if let Some(v) = changes.display_name {
        j.display_name = v;
    }
    if let Some(v) = changes.description {
        j.description = v;
    }
    if let Some(v) = changes.priority {
        j.priority = v;
    }
    if let Some(v) = changes.notify_flags {
        j.notify_flags = NotifyFlags::from_bits_truncate(v);
    }
    if let Some(v) = changes.notification_class {
        j.notification_class = v.filter(|c| !c.is_nil());
    }
    if let Some(v) = changes.notify_command {
        j.notify_command = v;
    }
    if let Some(v) = changes.min_retry_delay_secs {
        j.min_retry_delay_secs = v;
    }
    if let Some(v) = changes.no_progress_timeout_secs {
        j.no_progress_timeout_secs = v;
    }
    if let Some(v) = changes.max_transfer_time_secs {
        j.max_transfer_time_secs = v;
    }
    if let Some(v) = headers {
        j.options.headers = v;
    }
    if changes.headers_write_only == Some(true) {
        j.options.headers_write_only = true;
    }
    if let Some(v) = changes.credentials {
        j.options.credentials = v;
    }
    if let Some(v) = proxy {
        j.options.proxy = v;
    }
    if let Some(v) = ca_file {
        j.options.ca_file = v;
    }
    if let Some(v) = changes.bandwidth_limit {
        j.options.bandwidth_limit = v;
    }
    if let Some(v) = changes.connections {
        j.options.connections = v;
    }
    if let Some(v) = changes.peers {
        j.options.peers = Some(v);
    }
    if let Some(v) = changes.auto_complete {
        j.options.auto_complete = v;
    }
    if let Some(v) = changes.insecure_tls {
        j.options.insecure_tls = v;
    }
    if let Some(v) = changes.keep_going {
        j.options.keep_going = v;
    }
    // `on_metered` is a shorthand for cost flags: the one set last is the job's policy.
    if let Some(v) = changes.on_metered {
        j.options.on_metered = Some(v);
        j.options.cost_flags = None;
    }
    if let Some(v) = changes.cost_flags {
        j.options.cost_flags = Some(v);
        j.options.on_metered = None;
    }
    if let Some(v) = changes.ignore_congestion {
        j.options.ignore_congestion = v;
    }
    if let Some(v) = reply_file {
        j.options.reply_file = v;
    }
    let security = &mut j.options.security;
    if let Some(v) = changes.redirect_policy {
        security.redirect_policy = v;
    }
    if let Some(v) = pins {
        security.pinned_public_keys = v;
    }
    if let Some(v) = crl_file {
        security.crl_file = v;
    }
    if let Some(v) = client_certificate {
        security.client_certificate = v;
    }
    if let Some(v) = client_key {
        security.client_key = v;
    }
    if let Some(v) = changes.proxy_credentials {
        security.proxy_credentials = v;
    }
    if let Some(v) = changes.max_download_size {
        j.options.max_download_size = v;
    }
    if let Some(v) = changes.minimum_notification_interval_ms {
        j.options.minimum_notification_interval_ms = v;
    }
    if let Some(v) = changes.http_method {
        j.options.http_method = Some(v).filter(|m| !m.is_empty());
    }
    Ok(())
}
