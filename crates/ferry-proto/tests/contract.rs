//! The wire contract's shape, checked on the compiled descriptors: one file and service
//! per concern, the RPCs of each service, request/response names, enum zero values, and no
//! field named after a keyword of a major language (so every generator can use it).

use std::collections::BTreeSet;

use ferry_proto::v1::{FILE_DESCRIPTOR_SET, SERVICE_NAMES};
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// Keywords of Python, Java, Kotlin, Go, Rust, Ruby, C#, C++, JavaScript and Swift that a
/// field or oneof could plausibly be called.
const KEYWORDS: &[&str] = &[
    "abstract",
    "alias",
    "and",
    "as",
    "assert",
    "async",
    "auto",
    "await",
    "base",
    "begin",
    "bool",
    "boolean",
    "break",
    "byte",
    "case",
    "catch",
    "char",
    "checked",
    "class",
    "const",
    "continue",
    "crate",
    "decimal",
    "def",
    "default",
    "defer",
    "del",
    "delegate",
    "delete",
    "do",
    "double",
    "dyn",
    "elif",
    "else",
    "elsif",
    "end",
    "ensure",
    "enum",
    "event",
    "except",
    "explicit",
    "export",
    "extends",
    "extern",
    "false",
    "fallthrough",
    "final",
    "finally",
    "fixed",
    "float",
    "fn",
    "for",
    "foreach",
    "friend",
    "from",
    "func",
    "function",
    "global",
    "go",
    "goto",
    "if",
    "impl",
    "implements",
    "implicit",
    "import",
    "in",
    "inout",
    "instanceof",
    "int",
    "interface",
    "internal",
    "is",
    "lambda",
    "let",
    "lock",
    "long",
    "loop",
    "macro",
    "match",
    "mod",
    "module",
    "move",
    "mut",
    "namespace",
    "native",
    "new",
    "next",
    "nil",
    "none",
    "nonlocal",
    "not",
    "null",
    "object",
    "operator",
    "or",
    "out",
    "override",
    "package",
    "params",
    "pass",
    "private",
    "protected",
    "pub",
    "public",
    "raise",
    "range",
    "readonly",
    "redo",
    "ref",
    "register",
    "rescue",
    "retry",
    "return",
    "sbyte",
    "sealed",
    "select",
    "self",
    "short",
    "signed",
    "sizeof",
    "static",
    "string",
    "struct",
    "super",
    "switch",
    "synchronized",
    "template",
    "then",
    "this",
    "throw",
    "throws",
    "trait",
    "transient",
    "true",
    "try",
    "type",
    "typedef",
    "typename",
    "typeof",
    "uint",
    "ulong",
    "undef",
    "union",
    "unless",
    "unsafe",
    "unsigned",
    "until",
    "use",
    "using",
    "var",
    "virtual",
    "void",
    "volatile",
    "when",
    "where",
    "while",
    "with",
    "yield",
];

fn files() -> Vec<FileDescriptorProto> {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set decodes")
        .file
        .into_iter()
        .filter(|f| f.package() == "ferry.v1")
        .collect()
}

fn messages<'a>(
    out: &mut Vec<(String, &'a DescriptorProto)>,
    prefix: &str,
    ms: &'a [DescriptorProto],
) {
    for m in ms {
        let name = format!("{prefix}{}", m.name());
        messages(out, &format!("{name}."), &m.nested_type);
        out.push((name, m));
    }
}

fn all_messages(files: &[FileDescriptorProto]) -> Vec<(String, &DescriptorProto)> {
    let mut out = Vec::new();
    for f in files {
        messages(&mut out, "", &f.message_type);
    }
    out
}

fn all_enums(files: &[FileDescriptorProto]) -> Vec<&EnumDescriptorProto> {
    let mut out: Vec<&EnumDescriptorProto> = Vec::new();
    for f in files {
        out.extend(&f.enum_type);
    }
    for (_, m) in all_messages(files) {
        out.extend(&m.enum_type);
    }
    out
}

/// `NotifyFlag` → `NOTIFY_FLAG`.
fn upper_snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

#[test]
fn one_file_and_service_per_concern() {
    let files = files();
    let names: BTreeSet<&str> = files.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "ferry/v1/common.proto",
            "ferry/v1/daemon.proto",
            "ferry/v1/jobs.proto",
            "ferry/v1/notifications.proto",
            "ferry/v1/peers.proto",
            "ferry/v1/queries.proto",
        ])
    );
    let mut services = Vec::new();
    for f in &files {
        for s in &f.service {
            let expected = format!("ferry/v1/{}.proto", s.name().to_ascii_lowercase());
            assert_eq!(
                f.name(),
                expected,
                "service {} lives in its own file",
                s.name()
            );
            services.push(format!("ferry.v1.{}", s.name()));
        }
    }
    services.sort();
    let mut listed: Vec<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(services, listed);
}

#[test]
fn each_service_has_its_rpcs_with_standard_request_and_response_names() {
    let files = files();
    let rpcs = |service: &str| -> Vec<String> {
        files
            .iter()
            .flat_map(|f| &f.service)
            .find(|s| s.name() == service)
            .unwrap_or_else(|| panic!("no service {service}"))
            .method
            .iter()
            .map(|m| {
                assert_eq!(m.input_type(), format!(".ferry.v1.{}Request", m.name()));
                assert_eq!(m.output_type(), format!(".ferry.v1.{}Response", m.name()));
                m.name().to_string()
            })
            .collect()
    };
    assert_eq!(
        rpcs("Jobs"),
        [
            "CreateJob",
            "AddFiles",
            "GetJob",
            "ListJobs",
            "ListFiles",
            "ResumeJob",
            "SuspendJob",
            "CancelJob",
            "CompleteJob",
            "SetJobProperties",
            "TakeOwnership",
            "WatchJob",
            "SetRemoteName",
            "ReplaceRemotePrefix",
            "RequestFileRanges",
            "UpdateDownloadPosition"
        ]
    );
    assert_eq!(
        rpcs("Notifications"),
        [
            "Connect",
            "SetNotifyInterface",
            "GetNotifyInterface",
            "RegisterClassObject",
            "RegisterHandler",
            "UnregisterHandler",
            "ListHandlers",
            "SetValidationState"
        ]
    );
    assert_eq!(
        rpcs("Queries"),
        ["ExecQuery", "ExecNotificationQuery", "ExecMethod"]
    );
    assert_eq!(rpcs("Daemon"), ["Status", "Shutdown"]);
    assert_eq!(
        rpcs("Peers"),
        ["GetPeersStatus", "ListCacheEntries", "ClearCache"]
    );
}

#[test]
fn no_field_is_named_after_a_keyword() {
    let files = files();
    for (message, m) in all_messages(&files) {
        for f in &m.field {
            assert!(
                !KEYWORDS.contains(&f.name()),
                "field {message}.{} is a keyword of some language",
                f.name()
            );
        }
        for o in &m.oneof_decl {
            assert!(
                !KEYWORDS.contains(&o.name()),
                "oneof {message}.{} is a keyword of some language",
                o.name()
            );
        }
    }
}

#[test]
fn enums_are_prefixed_and_start_unspecified() {
    let files = files();
    let enums = all_enums(&files);
    let names: BTreeSet<&str> = enums.iter().map(|e| e.name()).collect();
    for wanted in [
        "NotifyFlag",
        "CallFlag",
        "FinalStatusCode",
        "UploadProtocol",
        "ErrorReason",
    ] {
        assert!(names.contains(wanted), "enum {wanted} exists");
    }
    for e in enums {
        let prefix = format!("{}_", upper_snake(e.name()));
        let zero = &e.value[0];
        assert_eq!(zero.number(), 0);
        assert_eq!(zero.name(), format!("{prefix}UNSPECIFIED"));
        for v in &e.value {
            assert!(
                v.name().starts_with(&prefix),
                "{} in {}",
                v.name(),
                e.name()
            );
        }
    }
    let status = files
        .iter()
        .flat_map(|f| &f.enum_type)
        .find(|e| e.name() == "FinalStatusCode")
        .unwrap();
    assert!(status
        .value
        .iter()
        .any(|v| v.name() == "FINAL_STATUS_CODE_CALL_CANCELLED"));
}

#[test]
fn lists_are_paged() {
    let files = files();
    let messages = all_messages(&files);
    let fields = |name: &str| -> Vec<String> {
        let (_, m) = messages.iter().find(|(n, _)| n == name).unwrap();
        m.field.iter().map(|f| f.name().to_string()).collect()
    };
    for list in ["ListJobs", "ListFiles"] {
        let req = fields(&format!("{list}Request"));
        assert!(req.contains(&"page_size".into()) && req.contains(&"page_token".into()));
        assert!(fields(&format!("{list}Response")).contains(&"next_page_token".into()));
    }
}
