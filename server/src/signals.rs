//! SIGTERM and SIGINT end the process cleanly: everything acknowledged is already durable, so
//! the server only has to stop.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts a thread that exits the process with status 0 on SIGTERM or SIGINT.
pub fn exit_on_termination() {
    let Ok(mut signals) = Signals::new([SIGTERM, SIGINT]) else {
        crate::log_line!("zinc: cannot install signal handlers");
        return;
    };
    std::thread::Builder::new()
        .name("zinc-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                crate::log_line!("zinc: signal {signal}: stopping");
                std::process::exit(0);
            }
        })
        .map(|_| ())
        .unwrap_or_else(|error| crate::log_line!("zinc: cannot start signal thread: {error}"));
}
