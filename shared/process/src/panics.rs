//! Panics reach the log as one `tracing` event each, and only the first
//! carries a backtrace: a request that keeps hitting the same bug must not
//! fill the log with traces.

use std::backtrace::Backtrace;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};

/// Replaces the default hook, which writes straight to stderr (with a
/// backtrace per panic when `RUST_BACKTRACE` is set).
pub(crate) fn log_panics() {
    static BACKTRACE_LOGGED: AtomicBool = AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let message = panic_message(info);
        if BACKTRACE_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::error!(%location, "panicked: {message}");
        } else {
            let backtrace = Backtrace::force_capture();
            tracing::error!(%location, "panicked: {message}\n{backtrace}");
        }
    }));
}

fn panic_message<'a>(info: &'a PanicHookInfo<'_>) -> &'a str {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
