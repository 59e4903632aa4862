//! The allocator of every Myelin binary (each links this crate), and the
//! options it runs with.
//!
//! glibc's allocator keeps freed memory in per-thread arenas, so a
//! process's RSS grows with every busy runtime thread (a password hash's
//! 7 MiB stays behind on each thread that ever hashed); mimalloc gives
//! memory back and is faster for the many small allocations of JSON.

use libmimalloc_sys::{mi_option_set_default, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_e` (the same
/// index in its v2 and v3); the bindings name no constant for it.
const ARENA_EAGER_COMMIT: mi_option_t = 4;

/// Sets the allocator's options. An option read when the first arena is
/// reserved stays for that arena, and the Rust runtime allocates before
/// `main`: on ELF targets this runs as a constructor, before any Rust code;
/// every binary's `main` also calls it first, for other targets (a second
/// call changes nothing).
///
/// Arenas are committed when first used rather than up front: an eagerly
/// committed arena is backed by transparent huge pages, about 8 MiB more
/// per process for nothing. A `MIMALLOC_ARENA_EAGER_COMMIT` in the
/// environment still wins (mimalloc reads it when the process loads, and a
/// default does not replace what it read).
pub fn tune_allocator() {
    // SAFETY: `mi_option_set_default` only stores a number in mimalloc's
    // option table, for an index inside it; any value is valid for this
    // option. It is not thread safe, and `main` calls it before any other
    // thread exists.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set_default(ARENA_EAGER_COMMIT, 0);
    }
}

/// Runs [`tune_allocator`] when the process loads, before the runtime's
/// first allocation.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_AT_LOAD: extern "C" fn() = {
    extern "C" fn tune_at_load() {
        tune_allocator();
    }
    tune_at_load
};

#[cfg(test)]
mod tests {
    use super::*;

    fn eager_commit() -> std::ffi::c_long {
        // SAFETY: reads one entry of the option table, inside its bounds.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT)
        }
    }

    #[test]
    fn arenas_are_committed_lazily_unless_the_environment_says_otherwise() {
        let from_environment = std::env::var("MIMALLOC_ARENA_EAGER_COMMIT")
            .ok()
            .and_then(|value| value.parse::<std::ffi::c_long>().ok());
        // Already set when the process loaded, before this test's code ran
        // (mimalloc's own default is 2: eager where the OS overcommits).
        assert_eq!(eager_commit(), from_environment.unwrap_or(0));
        tune_allocator();
        assert_eq!(eager_commit(), from_environment.unwrap_or(0));
    }
}
