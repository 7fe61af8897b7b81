//! The system's GSSAPI (MIT Kerberos's `libgssapi_krb5.so.2`), loaded at run time with
//! libloading the first time a job needs it: a build needs no Kerberos headers, no
//! clang, and runs where the library is missing (a Negotiate job then fails saying what
//! to install). Only what an HTTP Negotiate initiator needs (RFC 4559, RFC 2744's C
//! bindings): a first SPNEGO token for `HTTP@host` from the job owner's credential cache.
//!
//! May use: nothing else of ferryd.

use std::ffi::{c_int, c_void, CString};
use std::ptr;
use std::sync::OnceLock;

/// The library's file name (MIT Kerberos; Debian's package libgssapi-krb5-2).
pub const LIBRARY: &str = "libgssapi_krb5.so.2";

type OmUint32 = u32;

#[repr(C)]
struct OidDesc {
    length: OmUint32,
    elements: *mut c_void,
}

#[repr(C)]
struct OidSetDesc {
    count: usize,
    elements: *mut OidDesc,
}

#[repr(C)]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

#[repr(C)]
struct KeyValueElement {
    key: *const std::ffi::c_char,
    value: *const std::ffi::c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: OmUint32,
    elements: *mut KeyValueElement,
}

type Handle = *mut c_void;

/// GSS_C_NT_HOSTBASED_SERVICE, 1.2.840.113554.1.2.1.4: names such as `HTTP@host`.
static NT_HOSTBASED_SERVICE: [u8; 10] =
    [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x01, 0x04];
/// SPNEGO, 1.3.6.1.5.5.2: the mechanism of HTTP Negotiate.
static SPNEGO: [u8; 6] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// Kerberos 5, 1.2.840.113554.1.2.2.
static KRB5: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

const GSS_C_INITIATE: c_int = 1;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
/// The calling-error and routine-error bits of a major status (GSS_ERROR()).
const ERROR_MASK: OmUint32 = 0xffff_0000;

type ImportName =
    unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc, *mut OidDesc, *mut Handle) -> OmUint32;
type ReleaseHandle = unsafe extern "C" fn(*mut OmUint32, *mut Handle) -> OmUint32;
type AcquireCredFrom = unsafe extern "C" fn(
    *mut OmUint32,
    Handle,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *const KeyValueSet,
    *mut Handle,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type InitSecContext = unsafe extern "C" fn(
    *mut OmUint32,
    Handle,
    *mut Handle,
    Handle,
    *mut OidDesc,
    OmUint32,
    OmUint32,
    *mut c_void,
    *mut BufferDesc,
    *mut *mut OidDesc,
    *mut BufferDesc,
    *mut OmUint32,
    *mut OmUint32,
) -> OmUint32;
type DeleteSecContext =
    unsafe extern "C" fn(*mut OmUint32, *mut Handle, *mut BufferDesc) -> OmUint32;
type ReleaseBuffer = unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc) -> OmUint32;
type DisplayStatus = unsafe extern "C" fn(
    *mut OmUint32,
    OmUint32,
    c_int,
    *mut OidDesc,
    *mut OmUint32,
    *mut BufferDesc,
) -> OmUint32;

/// The library's functions ferry calls, resolved once.
struct Gss {
    import_name: ImportName,
    release_name: ReleaseHandle,
    acquire_cred_from: AcquireCredFrom,
    release_cred: ReleaseHandle,
    init_sec_context: InitSecContext,
    delete_sec_context: DeleteSecContext,
    release_buffer: ReleaseBuffer,
    display_status: DisplayStatus,
    /// Kept loaded for as long as the process runs (the pointers above point into it).
    _lib: libloading::Library,
}

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GssError {
    /// The library (or one of its functions) could not be loaded.
    Unavailable(String),
    /// The credential cache holds no usable ticket-granting ticket (none, expired, no
    /// cache): the GSSAPI's words.
    NoTicket(String),
    /// Anything else (no such service principal, the KDC unreachable…): the GSSAPI's words.
    Failed(String),
}

fn library() -> Result<&'static Gss, GssError> {
    static GSS: OnceLock<Result<Gss, String>> = OnceLock::new();
    GSS.get_or_init(load)
        .as_ref()
        .map_err(|e| GssError::Unavailable(e.clone()))
}

fn load() -> Result<Gss, String> {
    // SAFETY: loading MIT Kerberos's GSSAPI runs only its initialisers, which have no
    // preconditions; each symbol is given the type of its prototype in <gssapi/gssapi.h>
    // (and <gssapi/gssapi_ext.h> for gss_acquire_cred_from, MIT Kerberos 1.11 on).
    unsafe {
        let lib = libloading::Library::new(LIBRARY).map_err(|e| e.to_string())?;
        macro_rules! sym {
            ($t:ty, $name:literal) => {
                *lib.get::<$t>(concat!($name, "\0").as_bytes())
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        let import_name = sym!(ImportName, "gss_import_name");
        let release_name = sym!(ReleaseHandle, "gss_release_name");
        let acquire_cred_from = sym!(AcquireCredFrom, "gss_acquire_cred_from");
        let release_cred = sym!(ReleaseHandle, "gss_release_cred");
        let init_sec_context = sym!(InitSecContext, "gss_init_sec_context");
        let delete_sec_context = sym!(DeleteSecContext, "gss_delete_sec_context");
        let release_buffer = sym!(ReleaseBuffer, "gss_release_buffer");
        let display_status = sym!(DisplayStatus, "gss_display_status");
        Ok(Gss {
            import_name,
            release_name,
            acquire_cred_from,
            release_cred,
            init_sec_context,
            delete_sec_context,
            release_buffer,
            display_status,
            _lib: lib,
        })
    }
}

fn oid(bytes: &'static [u8]) -> OidDesc {
    OidDesc {
        length: bytes.len() as OmUint32,
        elements: bytes.as_ptr() as *mut c_void,
    }
}

/// The first SPNEGO token for `service` (a host-based name such as `HTTP@example.com`),
/// from the tickets of `ccache` (as KRB5CCNAME names a cache; `None`: the default
/// cache). Blocks: may ask the KDC for a service ticket.
pub fn initial_token(service: &str, ccache: Option<&str>) -> Result<Vec<u8>, GssError> {
    let gss = library()?;
    let store_value = match ccache {
        Some(c) => Some(
            CString::new(c)
                .map_err(|_| GssError::Failed("the credential cache name holds a NUL".into()))?,
        ),
        None => None,
    };
    let mut element = KeyValueElement {
        key: c"ccache".as_ptr(),
        value: store_value.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
    };
    let store = KeyValueSet {
        count: 1,
        elements: &mut element,
    };
    let store_ptr: *const KeyValueSet = if store_value.is_some() {
        &store
    } else {
        ptr::null()
    };
    // First the Kerberos credentials alone: when there is no ticket, Kerberos says why
    // (SPNEGO would only say it found no mechanism).
    let krb5_cred = gss.acquire(KRB5.as_slice(), store_ptr)?;
    gss.release_cred(krb5_cred);
    let cred = gss.acquire(SPNEGO.as_slice(), store_ptr)?;
    let result = gss.init(cred, service);
    gss.release_cred(cred);
    result
}

impl Gss {
    /// Initiator credentials for `mech` from `store` (null: the default cache).
    fn acquire(&self, mech: &'static [u8], store: *const KeyValueSet) -> Result<Handle, GssError> {
        let mut mech_oid = oid(mech);
        let mut mechs = OidSetDesc {
            count: 1,
            elements: &mut mech_oid,
        };
        let mut minor = 0;
        let mut cred: Handle = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `cred` receives a handle released
        // by the caller; the actual mechanisms and time are not asked for (null).
        let major = unsafe {
            (self.acquire_cred_from)(
                &mut minor,
                ptr::null_mut(),
                0,
                &mut mechs,
                GSS_C_INITIATE,
                store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major & ERROR_MASK != 0 {
            return Err(GssError::NoTicket(self.status(major, minor)));
        }
        Ok(cred)
    }

    /// The first token of a context with `service` under `cred`.
    fn init(&self, cred: Handle, service: &str) -> Result<Vec<u8>, GssError> {
        let mut minor = 0;
        let mut name_buf = BufferDesc {
            length: service.len(),
            value: service.as_ptr() as *mut c_void,
        };
        let mut name_type = oid(NT_HOSTBASED_SERVICE.as_slice());
        let mut name: Handle = ptr::null_mut();
        // SAFETY: the buffer points at `service`'s bytes for the call (the library copies
        // them); `name` receives a handle released below.
        let major =
            unsafe { (self.import_name)(&mut minor, &mut name_buf, &mut name_type, &mut name) };
        if major & ERROR_MASK != 0 {
            return Err(GssError::Failed(self.status(major, minor)));
        }
        let mut mech = oid(SPNEGO.as_slice());
        let mut ctx: Handle = ptr::null_mut();
        let mut out = BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        };
        // SAFETY: a new context (null handle), no channel bindings, no input token, no
        // flags (no mutual authentication: the answer's token is not needed); `out` and
        // `ctx` are released below.
        let major = unsafe {
            (self.init_sec_context)(
                &mut minor,
                cred,
                &mut ctx,
                name,
                &mut mech,
                0,
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut out,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let result = if major & ERROR_MASK != 0 {
            Err(GssError::Failed(self.status(major, minor)))
        } else if out.value.is_null() || out.length == 0 {
            Err(GssError::Failed("the GSSAPI made an empty token".into()))
        } else {
            // SAFETY: the library made `out`: `length` bytes at `value`.
            Ok(unsafe { std::slice::from_raw_parts(out.value as *const u8, out.length) }.to_vec())
        };
        let mut m = 0;
        // SAFETY: each handle and buffer was made by the library above (or is null/empty,
        // which these calls accept).
        unsafe {
            (self.release_buffer)(&mut m, &mut out);
            (self.delete_sec_context)(&mut m, &mut ctx, ptr::null_mut());
            (self.release_name)(&mut m, &mut name);
        }
        result
    }

    fn release_cred(&self, mut cred: Handle) {
        let mut m = 0;
        // SAFETY: `cred` was made by gss_acquire_cred_from.
        unsafe { (self.release_cred)(&mut m, &mut cred) };
    }

    /// The library's words for a major and a minor status: "major text: minor text".
    fn status(&self, major: OmUint32, minor: OmUint32) -> String {
        let mut words = self.display(major, GSS_C_GSS_CODE);
        if minor != 0 {
            let m = self.display(minor, GSS_C_MECH_CODE);
            if !m.is_empty() {
                words = format!("{words}: {m}");
            }
        }
        words
    }

    fn display(&self, status: OmUint32, kind: c_int) -> String {
        let mut parts = Vec::new();
        let mut message_context: OmUint32 = 0;
        // Bounded: a status has a few messages at most.
        for _ in 0..8 {
            let mut minor = 0;
            let mut buf = BufferDesc {
                length: 0,
                value: ptr::null_mut(),
            };
            // SAFETY: `buf` receives a buffer released below; no mechanism (null) lets the
            // library find the minor code's table.
            let major = unsafe {
                (self.display_status)(
                    &mut minor,
                    status,
                    kind,
                    ptr::null_mut(),
                    &mut message_context,
                    &mut buf,
                )
            };
            if major & ERROR_MASK != 0 {
                break;
            }
            if !buf.value.is_null() && buf.length > 0 {
                // SAFETY: the library made `buf`: `length` bytes at `value`.
                let bytes =
                    unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) };
                parts.push(
                    String::from_utf8_lossy(bytes)
                        .trim_end_matches('\0')
                        .to_string(),
                );
            }
            let mut m = 0;
            // SAFETY: made by gss_display_status above.
            unsafe { (self.release_buffer)(&mut m, &mut buf) };
            if message_context == 0 {
                break;
            }
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs libgssapi-krb5-2: .ci/run runs it"]
    fn parity_negotiate_a_cache_without_tickets_is_no_ticket_in_kerberos_words() {
        let dir = tempfile::tempdir().unwrap();
        let cache = format!("FILE:{}", dir.path().join("none").display());
        match initial_token("HTTP@origin.invalid", Some(&cache)) {
            // MIT Kerberos: "No credentials were supplied, or the credentials were
            // unavailable or inaccessible: No credentials cache found".
            Err(GssError::NoTicket(words)) => {
                assert!(words.contains("credentials cache"), "{words}")
            }
            other => panic!("expected NoTicket, got {other:?}"),
        }
    }
}
