//! Server reflection (`grpc.reflection.v1` and `v1alpha`), answered as gRPC's reference
//! servers (Go, C++, Java) answer it, so that a stock client — grpcurl, grpc-python's
//! `ProtoReflectionDescriptorDatabase`, grpc-js's reflection client — resolves every type
//! it meets:
//!
//! - a file asked for by name or by a symbol it declares comes with the files it imports,
//!   transitively (those this stream has not sent yet), the file asked for first;
//! - the files served are ferry's (`ferry/v1/*.proto`), the reflection protocol's own,
//!   and `google/rpc/status.proto` and `google/rpc/error_details.proto` (with the
//!   `google/protobuf` files they import): a refusal's details carry a
//!   `google.rpc.ErrorInfo` (`wire.md`, "Errors on the wire"), which a client decodes by
//!   asking reflection for that type;
//! - an unknown file or symbol is an `ErrorResponse` (`NOT_FOUND`) on the stream, which
//!   goes on.
//!
//! tonic-reflection, which served this before, answered a symbol with its file alone and
//! only from the descriptor sets given to it; the google.rpc files come from tonic-types
//! (the same definitions that write the details), which names them `status.proto` and
//! `error_details.proto`: they are served under their canonical paths.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::OnceLock;

use ferry_proto::v1 as pb;
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::BoxStream;

/// tonic-types' names of the google.rpc files, and their canonical paths.
const RENAMED: [(&str, &str); 2] = [
    ("status.proto", "google/rpc/status.proto"),
    ("error_details.proto", "google/rpc/error_details.proto"),
];

/// One file that reflection serves.
struct File {
    /// Its encoded `FileDescriptorProto`.
    bytes: Vec<u8>,
    /// The files it imports.
    dependencies: Vec<String>,
}

/// Every file, symbol and service reflection knows.
struct Index {
    files: HashMap<String, File>,
    /// A fully-qualified name → the file declaring it.
    symbols: HashMap<String, String>,
    /// Fully-qualified names of the messages (for extension numbers).
    messages: HashSet<String>,
    services: Vec<String>,
}

/// The index, built once from the embedded descriptor sets.
fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index {
            files: HashMap::new(),
            symbols: HashMap::new(),
            messages: HashSet::new(),
            services: Vec::new(),
        };
        for set in [
            pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
        ] {
            let set = FileDescriptorSet::decode(set).expect("an embedded descriptor set decodes");
            for file in set.file {
                index.add(file);
            }
        }
        index
    })
}

/// The canonical path of a file tonic-types names otherwise.
fn canonical(name: &str) -> String {
    RENAMED
        .iter()
        .find(|(short, _)| *short == name)
        .map_or(name, |(_, full)| full)
        .to_string()
}

impl Index {
    fn add(&mut self, mut file: FileDescriptorProto) {
        let name = canonical(file.name());
        if self.files.contains_key(&name) {
            return;
        }
        file.name = Some(name.clone());
        for d in &mut file.dependency {
            *d = canonical(d);
        }
        let package = file.package().to_string();
        for m in &file.message_type {
            self.message(&name, &package, m);
        }
        for e in &file.enum_type {
            self.enumeration(&name, &package, e);
        }
        for s in &file.service {
            let service = qualified(&package, s.name());
            for m in &s.method {
                self.symbol(&name, qualified(&service, m.name()));
            }
            self.services.push(service.clone());
            self.symbol(&name, service);
        }
        for x in &file.extension {
            self.symbol(&name, qualified(&package, x.name()));
        }
        self.files.insert(
            name,
            File {
                dependencies: file.dependency.clone(),
                bytes: file.encode_to_vec(),
            },
        );
    }

    fn symbol(&mut self, file: &str, symbol: String) {
        self.symbols
            .entry(symbol)
            .or_insert_with(|| file.to_string());
    }

    fn message(&mut self, file: &str, scope: &str, m: &DescriptorProto) {
        let name = qualified(scope, m.name());
        for f in &m.field {
            self.symbol(file, qualified(&name, f.name()));
        }
        for o in &m.oneof_decl {
            self.symbol(file, qualified(&name, o.name()));
        }
        for x in &m.extension {
            self.symbol(file, qualified(&name, x.name()));
        }
        for n in &m.nested_type {
            self.message(file, &name, n);
        }
        for e in &m.enum_type {
            self.enumeration(file, &name, e);
        }
        self.messages.insert(name.clone());
        self.symbol(file, name);
    }

    /// An enum and its values (which protobuf scopes beside the enum, not inside it).
    fn enumeration(&mut self, file: &str, scope: &str, e: &EnumDescriptorProto) {
        for v in &e.value {
            self.symbol(file, qualified(scope, v.name()));
        }
        self.symbol(file, qualified(scope, e.name()));
    }
}

fn qualified(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// What a reflection request is answered with, whatever the protocol version.
#[derive(Debug, PartialEq)]
enum Answer {
    Files(Vec<Vec<u8>>),
    Services(Vec<String>),
    ExtensionNumbers(String),
    NotFound(String),
    Invalid(String),
}

/// One reflection stream: the files it has sent (each goes once, as a dependency).
struct Session {
    index: &'static Index,
    sent: HashSet<String>,
}

impl Session {
    fn new() -> Session {
        Session {
            index: index(),
            sent: HashSet::new(),
        }
    }

    /// File `name` (always), then every file it imports, transitively, that this stream
    /// has not sent yet.
    fn file(&mut self, name: &str) -> Answer {
        if !self.index.files.contains_key(name) {
            return Answer::NotFound(format!("file '{name}' not found"));
        }
        let mut out = Vec::new();
        let mut queue = VecDeque::from([name.to_string()]);
        while let Some(next) = queue.pop_front() {
            let Some(file) = self.index.files.get(&next) else {
                continue;
            };
            let first = out.is_empty();
            if self.sent.insert(next) || first {
                out.push(file.bytes.clone());
            } else {
                continue;
            }
            queue.extend(file.dependencies.iter().cloned());
        }
        Answer::Files(out)
    }

    fn symbol(&mut self, symbol: &str) -> Answer {
        let symbol = symbol.trim_start_matches('.');
        match self.index.symbols.get(symbol) {
            Some(file) => self.file(file),
            None => Answer::NotFound(format!("symbol '{symbol}' not found")),
        }
    }

    fn extension_numbers(&self, message: &str) -> Answer {
        let message = message.trim_start_matches('.');
        if self.index.messages.contains(message) {
            Answer::ExtensionNumbers(message.to_string())
        } else {
            Answer::NotFound(format!("message type '{message}' not found"))
        }
    }

    fn services(&self) -> Answer {
        Answer::Services(self.index.services.clone())
    }
}

/// The reflection services, protocol versions v1 and v1alpha.
pub fn services() -> (
    tonic_reflection::pb::v1::server_reflection_server::ServerReflectionServer<ReflectionV1>,
    tonic_reflection::pb::v1alpha::server_reflection_server::ServerReflectionServer<
        ReflectionV1alpha,
    >,
) {
    (
        tonic_reflection::pb::v1::server_reflection_server::ServerReflectionServer::new(
            ReflectionV1,
        ),
        tonic_reflection::pb::v1alpha::server_reflection_server::ServerReflectionServer::new(
            ReflectionV1alpha,
        ),
    )
}

/// The service of protocol version `$ver` (the two versions' messages are alike).
macro_rules! reflection_service {
    ($service:ident, $ver:ident) => {
        #[doc = concat!("Server reflection, protocol version `grpc.reflection.", stringify!($ver), "`.")]
        pub struct $service;

        #[tonic::async_trait]
        impl tonic_reflection::pb::$ver::server_reflection_server::ServerReflection for $service {
            type ServerReflectionInfoStream =
                BoxStream<tonic_reflection::pb::$ver::ServerReflectionResponse>;

            async fn server_reflection_info(
                &self,
                req: Request<Streaming<tonic_reflection::pb::$ver::ServerReflectionRequest>>,
            ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                use tonic_reflection::pb::$ver::server_reflection_request::MessageRequest as Ask;
                use tonic_reflection::pb::$ver::server_reflection_response::MessageResponse as Say;
                use tonic_reflection::pb::$ver::{
                    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse,
                    ListServiceResponse, ServerReflectionResponse, ServiceResponse,
                };
                let mut requests = req.into_inner();
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    let mut session = Session::new();
                    // A request stream that breaks ends the call.
                    while let Some(Ok(request)) = requests.next().await {
                        let answer = match &request.message_request {
                            None => Answer::Invalid(
                                "the request asks nothing (message_request is not set)".into(),
                            ),
                            Some(Ask::FileByFilename(name)) => session.file(name),
                            Some(Ask::FileContainingSymbol(symbol)) => session.symbol(symbol),
                            Some(Ask::FileContainingExtension(x)) => Answer::NotFound(format!(
                                "extension {} of '{}' not found: no file declares extensions",
                                x.extension_number, x.containing_type
                            )),
                            Some(Ask::AllExtensionNumbersOfType(t)) => session.extension_numbers(t),
                            Some(Ask::ListServices(_)) => session.services(),
                        };
                        let error = |code: tonic::Code, error_message| {
                            Say::ErrorResponse(ErrorResponse {
                                error_code: code as i32,
                                error_message,
                            })
                        };
                        let say = match answer {
                            Answer::Files(file_descriptor_proto) => {
                                Say::FileDescriptorResponse(FileDescriptorResponse {
                                    file_descriptor_proto,
                                })
                            }
                            Answer::Services(names) => {
                                Say::ListServicesResponse(ListServiceResponse {
                                    service: names
                                        .into_iter()
                                        .map(|name| ServiceResponse { name })
                                        .collect(),
                                })
                            }
                            Answer::ExtensionNumbers(base_type_name) => {
                                Say::AllExtensionNumbersResponse(ExtensionNumberResponse {
                                    base_type_name,
                                    extension_number: Vec::new(),
                                })
                            }
                            Answer::NotFound(m) => error(tonic::Code::NotFound, m),
                            Answer::Invalid(m) => error(tonic::Code::InvalidArgument, m),
                        };
                        let response = ServerReflectionResponse {
                            valid_host: request.host.clone(),
                            original_request: Some(request),
                            message_response: Some(say),
                        };
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
        }
    };
}

reflection_service!(ReflectionV1, v1);
reflection_service!(ReflectionV1alpha, v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(answer: Answer) -> Vec<String> {
        match answer {
            Answer::Files(files) => files
                .iter()
                .map(|b| {
                    FileDescriptorProto::decode(b.as_slice())
                        .unwrap()
                        .name()
                        .to_string()
                })
                .collect(),
            other => panic!("not files: {other:?}"),
        }
    }

    /// A symbol's file comes with its imports (once per stream), and google.rpc.ErrorInfo
    /// — the type of the error details — is served under its canonical path.
    #[test]
    fn parity_reflection_sends_dependencies_and_serves_error_info() {
        let mut s = Session::new();
        assert_eq!(
            names(s.symbol("ferry.v1.Jobs")),
            ["ferry/v1/jobs.proto", "ferry/v1/common.proto"]
        );
        assert_eq!(
            names(s.symbol("ferry.v1.Queries.ExecQuery")),
            ["ferry/v1/queries.proto"],
            "common.proto was sent on this stream already"
        );
        assert_eq!(
            names(s.symbol("ferry.v1.Queries")),
            ["ferry/v1/queries.proto"],
            "the file asked for always comes"
        );
        assert_eq!(
            names(s.symbol("google.rpc.ErrorInfo")),
            [
                "google/rpc/error_details.proto",
                "google/protobuf/duration.proto"
            ]
        );
        assert_eq!(
            names(Session::new().file("google/rpc/status.proto")),
            ["google/rpc/status.proto", "google/protobuf/any.proto"]
        );
        for symbol in [
            "ferry.v1.JobState",
            "ferry.v1.JOB_STATE_QUEUED",
            "ferry.v1.Job.job_type",
            ".ferry.v1.ExecQueryRequest",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(
                matches!(Session::new().symbol(symbol), Answer::Files(_)),
                "{symbol}"
            );
        }
        assert!(matches!(
            Session::new().symbol("ferry.v1.Nothing"),
            Answer::NotFound(_)
        ));
        let Answer::Services(services) = Session::new().services() else {
            unreachable!()
        };
        for s in pb::SERVICE_NAMES {
            assert!(services.iter().any(|n| n == s), "{services:?}");
        }
        assert_eq!(
            Session::new().extension_numbers("google.rpc.ErrorInfo"),
            Answer::ExtensionNumbers("google.rpc.ErrorInfo".into())
        );
    }
}
