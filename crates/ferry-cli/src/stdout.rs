//! Standard output that ends quietly when its reader goes away, as Unix tools do:
//! `ferry list | head -1` exits with 141 (128 + SIGPIPE, what the shell reports for `cat`)
//! and prints nothing more, instead of Rust's panic "failed printing to stdout". ferry
//! cannot take SIGPIPE's default action itself: a write to ferryd's socket after it went
//! away would then kill the process instead of failing the call. Any other write error
//! ends ferry with curl's 23.
//!
//! Every line of output goes through `outln!`.
//!
//! May use: `ferry_cli::exit`, std.

use std::io::{self, Write};

use ferry_cli::exit::Exit;

/// Writes `args` and a newline to standard output, or ends the process as described above.
pub fn line(args: std::fmt::Arguments) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        gone(e);
    }
}

/// Writes `bytes` to standard output, or ends the process as described above.
pub fn bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        gone(e);
    }
}

fn gone(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(Exit::BrokenPipe.code());
    }
    let _ = writeln!(io::stderr(), "ferry: cannot write the output: {e}");
    std::process::exit(Exit::Write.code())
}

/// `println!` for ferry's output: see the module's documentation.
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}
