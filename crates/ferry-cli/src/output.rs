//! Printing jobs and files as text or JSON.

use ferry_client::{FileInfo, JobInfo};
use ferry_common::units::{format_rate, format_size as bytes};
use serde::Serialize;

/// `text` in exactly `width` terminal columns: cut with `…` when longer, padded with
/// spaces when shorter.
pub fn fit(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if text.width() <= width {
        return format!("{text}{}", " ".repeat(width - text.width()));
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
        used += 1;
    }
    out + &" ".repeat(width.saturating_sub(used))
}

/// Prints `value` as one line of JSON.
pub fn json<T: Serialize>(value: &T) {
    outln!(
        "{}",
        serde_json::to_string(value).expect("client types serialize")
    );
}

/// Seconds as people write them, and as `--no-progress-timeout` and the like read them
/// back: `14days`, `1h 30m`, `60s`.
pub fn duration(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn progress(done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) => format!("{} / {}", bytes(done), bytes(t)),
        None => format!("{} / ?", bytes(done)),
    }
}

/// A job as `key: value` lines.
pub fn job_detail(j: &JobInfo) {
    outln!("id:               {}", j.id);
    outln!("name:             {}", j.display_name);
    if !j.description.is_empty() {
        outln!("description:      {}", j.description);
    }
    outln!("state:            {}", j.state());
    if j.waiting_for_unmetered {
        outln!(
            "waiting:          the network is metered or roaming, a cost state outside its cost \
             flags; the job starts by itself when the network's state allows it"
        );
    }
    if let Some(t) = j.job_type {
        outln!("type:             {t}");
    }
    if let Some(p) = j.priority {
        outln!("priority:         {p}");
    }
    outln!("created:          {}", at(j.created_unix_ms));
    outln!("modified:         {}", at(j.modified_unix_ms));
    if let Some(t) = j.transferred_unix_ms {
        outln!("transferred:      {}", at(t));
    }
    outln!(
        "files:            {} / {}",
        j.files_transferred,
        j.files_total
    );
    outln!(
        "bytes:            {}",
        progress(j.bytes_transferred, j.bytes_total)
    );
    if j.bytes_per_second > 0 {
        outln!("rate:             {}", format_rate(j.bytes_per_second));
    }
    if j.state() == ferry_client::JobState::Transferring {
        let yielding = if j.yielding {
            "yes (gives way to other traffic)"
        } else {
            "no"
        };
        outln!("yielding:         {yielding}");
    }
    if let Some(e) = &j.error {
        let ctx = e.context.map(|c| c.to_string()).unwrap_or_default();
        outln!("error:            [{ctx}] {}: {}", e.code, e.message);
        if let Some(hint) = crate::hints::for_job_error(&e.code) {
            outln!("hint:             {hint}");
        }
    }
    if j.error_count > 0 {
        outln!("errors so far:    {}", j.error_count);
    }
    outln!("retry delay:      {}", duration(j.minimum_retry_delay_secs));
    outln!("no-progress stop: {}", duration(j.no_progress_timeout_secs));
    outln!(
        "notify flags:     {} ({:#x})",
        ferry_common::NotifyFlags::from_bits_retain(j.notify_flags).describe(),
        j.notify_flags
    );
    if let Some(c) = j.notification_class {
        outln!("notify class:     {c}");
    }
    if !j.notify_command.is_empty() {
        outln!("notify command:   {}", j.notify_command.join(" "));
    }
    if !j.last_notification_error.is_empty() {
        outln!("notify failure:   {}", j.last_notification_error);
    }
    if !j.headers.is_empty() {
        outln!("headers:          {}", j.headers.join("; "));
    }
    if j.headers_write_only {
        outln!("header values:    write-only (none is ever shown)");
    }
    if j.insecure_tls {
        outln!(
            "TLS check:        off (-k: the server's certificate is not checked; \
             `ferry set --secure` checks it again)"
        );
    }
    if j.auto_complete {
        outln!("completes:        by itself once transferred");
    }
    if j.keep_going {
        outln!("keep going:       yes (a file that fails does not stop the others)");
    }
    if let Some(c) = &j.credentials {
        outln!("credentials:      {c}");
    }
    if j.proxy != "system" && !j.proxy.is_empty() {
        outln!("proxy:            {}", j.proxy);
    }
    if let Some(c) = &j.ca_file {
        outln!("CA file:          {c}");
    }
    if let Some(c) = &j.proxy_credentials {
        outln!("proxy user:       {c}");
    }
    if let Some(p) = j
        .redirect_policy
        .filter(|p| *p != ferry_common::RedirectPolicy::AllowSilent)
    {
        outln!("redirects:        {p}");
    }
    if !j.pinned_public_keys.is_empty() {
        outln!("pinned keys:      {}", j.pinned_public_keys.join("; "));
    }
    if let Some(c) = &j.crl_file {
        outln!("CRL file:         {c}");
    }
    if let Some(c) = &j.client_certificate {
        outln!("client cert:      {c}");
    }
    if let Some(c) = &j.client_key {
        outln!("client key:       {c}");
    }
    if j.bandwidth_limit > 0 {
        outln!("bandwidth limit:  {}", format_rate(j.bandwidth_limit));
    }
    if j.max_transfer_time_secs > 0 {
        outln!("max time:         {}", duration(j.max_transfer_time_secs));
    }
    if j.max_download_size > 0 {
        outln!("max file size:    {}", bytes(j.max_download_size));
    }
    if j.minimum_notification_interval_ms > 0 {
        outln!(
            "notify interval:  {} ms (least time between job_modification calls)",
            j.minimum_notification_interval_ms
        );
    }
    if let Some(m) = &j.http_method {
        outln!("HTTP method:      {m}");
    }
    if j.connections > 1 {
        outln!("connections:      {}", j.connections);
    }
    outln!(
        "peers:            {}",
        j.peers.map(|m| m.as_str()).unwrap_or("default")
    );
    match (j.on_metered, j.priority) {
        _ if j.cost_flags_set => outln!("on metered:       by its cost flags"),
        (Some(p), _) => outln!("on metered:       {p}"),
        (None, Some(prio)) => outln!(
            "on metered:       {} (by its priority)",
            ferry_client::MeteredPolicy::default_for(prio)
        ),
        (None, None) => outln!("on metered:       by its priority"),
    }
    let whence = if j.cost_flags_set {
        ""
    } else if j.on_metered.is_some() {
        " (by on metered)"
    } else {
        " (by its priority)"
    };
    outln!(
        "cost flags:       {} ({:#x}){whence}",
        j.cost_flags.describe(),
        j.cost_flags.bits()
    );
    if j.ignore_congestion {
        outln!("ignores congestion: yes (does not yield to other traffic)");
    }
    if j.bytes_from_peers > 0 || j.bytes_from_origin > 0 {
        outln!("from origin:      {}", bytes(j.bytes_from_origin));
        outln!("from peers:       {}", bytes(j.bytes_from_peers));
    }
    if let Some(p) = &j.upload_protocol {
        outln!("upload protocol:  {p}");
    }
    if let Some(r) = &j.reply_file {
        outln!("reply file:       {r}");
    }
    if let Some(mask) = j.umask {
        outln!(
            "new files:        mode {:04o} (umask {mask:03o})",
            0o666 & !mask & 0o777
        );
    }
    if j.partial {
        outln!("partial:          yes (some files were discarded on complete)");
    }
}

/// A time of the daemon's (Unix milliseconds) as RFC 3339, in UTC.
fn at(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Jobs as a table.
pub fn job_table(jobs: &[JobInfo]) {
    outln!(
        "{:<36}  {:<15}  {:<10}  {:>7}  {:>23}  NAME",
        "ID",
        "STATE",
        "PRIORITY",
        "FILES",
        "BYTES"
    );
    for j in jobs {
        outln!(
            "{:<36}  {:<15}  {:<10}  {:>7}  {:>23}  {}",
            j.id,
            j.state().as_str(),
            j.priority.map(|p| p.as_str()).unwrap_or("?"),
            format!("{}/{}", j.files_transferred, j.files_total),
            progress(j.bytes_transferred, j.bytes_total),
            j.display_name
        );
    }
}

/// Jobs of every user as a table: the owner (login name, else uid) first.
pub fn job_table_with_owners(jobs: &[JobInfo]) {
    outln!(
        "{:<12}  {:<36}  {:<15}  {:<10}  {:>7}  {:>23}  NAME",
        "OWNER",
        "ID",
        "STATE",
        "PRIORITY",
        "FILES",
        "BYTES"
    );
    for j in jobs {
        outln!(
            "{:<12}  {:<36}  {:<15}  {:<10}  {:>7}  {:>23}  {}",
            user_name(j.owner_uid),
            j.id,
            j.state().as_str(),
            j.priority.map(|p| p.as_str()).unwrap_or("?"),
            format!("{}/{}", j.files_transferred, j.files_total),
            progress(j.bytes_transferred, j.bytes_total),
            j.display_name
        );
    }
}

/// The login name of `uid`, else the uid in decimal.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

/// Where a file comes from, for the table: the URL in use, and how many mirrors it has.
fn remote_of(f: &FileInfo) -> String {
    let url = if f.url_in_use.is_empty() {
        &f.remote_url
    } else {
        &f.url_in_use
    };
    match f.mirrors.len() {
        0 => url.clone(),
        n => format!("{url} (1 of {} URLs)", n + 1),
    }
}

/// Files as a table: REMOTE is the URL each is fetched from now (its own or a mirror).
pub fn file_table(files: &[FileInfo]) {
    outln!(
        "{:>5}  {:<4}  {:>23}  {:<40}  LOCAL",
        "INDEX",
        "DONE",
        "BYTES",
        "REMOTE"
    );
    for f in files {
        outln!(
            "{:>5}  {:<4}  {:>23}  {:<40}  {}",
            f.index,
            if f.completed { "yes" } else { "no" },
            progress(f.bytes_transferred, f.bytes_total),
            remote_of(f),
            f.local_path
        );
    }
}

/// Each file's last response headers, under its index.
pub fn response_headers(files: &[FileInfo]) {
    for f in files {
        outln!();
        if f.response_headers.is_empty() {
            outln!("file {}: no response yet", f.index);
            continue;
        }
        outln!("file {}: last response headers", f.index);
        for h in &f.response_headers {
            outln!("  {h}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, fit};

    #[test]
    fn cli_trust_durations_read_as_people_write_them() {
        assert_eq!(duration(1_209_600), "14days");
        assert_eq!(duration(5400), "1h 30m");
        assert_eq!(duration(60), "1m");
        assert_eq!(duration(2), "2s");
    }

    #[test]
    fn names_fit_their_column() {
        assert_eq!(fit("a.iso", 8), "a.iso   ");
        assert_eq!(fit("a-very-long-name.iso", 8), "a-very-…");
        assert_eq!(fit("日本語のファイル", 7), "日本語…");
        assert_eq!(fit("", 3), "   ");
    }

    #[test]
    fn owners_are_named_or_numbered() {
        assert_eq!(super::user_name(0), "root");
        assert_eq!(super::user_name(4_000_000_000), "4000000000");
    }
}
