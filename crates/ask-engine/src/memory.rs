//! The process's heap, as the engine's work needs it: a prefill frees and
//! allocates megabytes per layer, and a long-running caller drops whole
//! models. These calls reach the allocators ask runs on (mimalloc, its
//! global allocator, and glibc's malloc, which ONNX Runtime allocates
//! through); with another global allocator the mimalloc calls do nothing.

use std::ffi::{c_int, c_long};

// mimalloc's C API, linked in with the allocator (libmimalloc-sys has these
// behind a feature that needs one more crate).
extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_collect(force: bool);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
    fn malloc_trim(pad: usize) -> c_int;
}

/// `mi_option_purge_delay` in mimalloc.h, the same in v2 and v3.
const PURGE_DELAY: c_int = 15;

/// Tells mimalloc to keep freed memory rather than hand it back to the
/// kernel a second later (mimalloc 3's default). Every handed-back page
/// comes back as a page fault that the kernel zeroes, a large share of a
/// prefill's time. For a short-lived process: its peak memory is what it
/// was, it is only not returned early. Call it first thing in `main`,
/// before any thread is started.
pub fn keep_freed() {
    // SAFETY: sets one integer option of the allocator in use.
    unsafe { mi_option_set(PURGE_DELAY, -1) };
}

/// Hands freed memory back to the kernel now: mimalloc's (ask's own
/// allocations, candle's tensors) and glibc's (ONNX Runtime's), for a
/// long-running command that has just dropped a model.
pub fn release_freed() {
    // SAFETY: both only return free pages of their own heaps to the kernel.
    unsafe {
        mi_collect(true);
        malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

    /// mimalloc 3's options.c gives purge_delay a default of 1000 (ms), a
    /// value no neighbouring option has: reading it at the index ask sets
    /// says the index names that option.
    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // SAFETY: reads one integer option.
        assert_eq!(unsafe { super::mi_option_get(super::PURGE_DELAY) }, 1000);
    }
}
